/**
 * The node classes the stand-in really executes (model-free ones, with real PNG files), plus
 * StandinSleep for "long GPU work". Every other class in object_info fails at run time with an
 * execution_error, as a ComfyUI without models would.
 */
import { createHash, randomInt } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { posix, join, relative, resolve, isAbsolute } from 'node:path';
import {
  containImage,
  decodePng,
  encodeRgbPng,
  imageFromPng,
  invertImage,
  isImageBatch,
  scaleImage,
  solidImage,
  type ImageBatch,
} from './image.js';
import { pyJsonDumps, pyStr } from './python-compat.js';
import type { ApiPrompt, DataDirs, ExtraData, NodeId, UiOutput } from './types.js';

export interface NodeContext {
  nodeId: NodeId;
  promptId: string;
  /** The prompt as queued (SaveImage embeds it in the PNG). */
  prompt: ApiPrompt;
  extraData: ExtraData;
  dirs: DataDirs;
  /** StandinSleep's duration when its `seconds` input is omitted. */
  defaultSleepMs(): number;
  /** The `videoBytes` knob: size of SaveVideo's files (0: the fixture MP4). */
  videoBytes(): number;
  /** comfy.utils.ProgressBar: `progress` + `progress_state` (+ preview). Throws when interrupted. */
  progress(value: number, max: number, preview?: ImageBatch): Promise<void>;
  /** PromptServer.send_progress_text: a binary TEXT frame. */
  sendText(text: string): void;
  /** PreviewImage's random `_temp_xxxxx` suffix, stable per node like ComfyUI's cached node object. */
  tempSuffix(): string;
}

export interface NodeResult {
  outputs: unknown[];
  ui?: UiOutput;
}

export type NodeImpl = (
  inputs: Record<string, unknown>,
  ctx: NodeContext,
) => NodeResult | Promise<NodeResult>;

/** A Python exception raised by a node; becomes an `execution_error`. */
export class NodeError extends Error {
  constructor(
    readonly exceptionType: string,
    message: string,
  ) {
    super(message);
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export function image(inputs: Record<string, unknown>, name: string): ImageBatch {
  const v = inputs[name];
  if (!isImageBatch(v))
    throw new NodeError('AttributeError', `'${typeof v}' object has no attribute 'shape'`);
  return v;
}

/** folder_paths.get_annotated_filepath: `name [output]` / `[input]` / `[temp]`, default input. */
export function annotatedPath(name: string, dirs: DataDirs): string {
  for (const type of ['output', 'input', 'temp'] as const) {
    const suffix = ` [${type}]`;
    if (name.endsWith(`[${type}]`)) return join(dirs[type], name.slice(0, -suffix.length));
  }
  return join(dirs.input, name);
}

/** folder_paths.get_save_image_path: subfolder from the prefix and the next free counter. */
export function saveImagePath(prefix: string, outputDir: string, width: number, height: number) {
  if (prefix.includes('%'))
    prefix = prefix.replaceAll('%width%', String(width)).replaceAll('%height%', String(height));
  const normalized = posix.normalize(prefix);
  const subfolder = posix.dirname(normalized) === '.' ? '' : posix.dirname(normalized);
  const filename = posix.basename(normalized);
  const folder = resolve(outputDir, subfolder);
  const rel = relative(outputDir, folder);
  if (rel.startsWith('..') || isAbsolute(rel)) {
    throw new NodeError(
      'Exception',
      `**** ERROR: Saving image outside the output folder is not allowed.\n full_output_folder: ${folder}\n         output_dir: ${outputDir}`,
    );
  }
  mkdirSync(folder, { recursive: true });
  const prefixLen = posix.basename(prefix).length;
  let counter = 1;
  for (const file of readdirSync(folder)) {
    const head = file.slice(0, prefixLen + 1);
    if (head.slice(0, -1) !== filename || !head.endsWith('_')) continue;
    const digits = /^\d+$/.test(file.slice(prefixLen + 1).split('_')[0] ?? '')
      ? Number(file.slice(prefixLen + 1).split('_')[0])
      : 0;
    counter = Math.max(counter, digits + 1);
  }
  return { folder, filename, counter, subfolder };
}

/** SaveImage/PreviewImage: one PNG per batch item, `prompt`/extra_pnginfo embedded as tEXt. */
function saveImages(images: ImageBatch, prefix: string, type: 'output' | 'temp', ctx: NodeContext): UiOutput {
  const dir = type === 'output' ? ctx.dirs.output : ctx.dirs.temp;
  const target = saveImagePath(prefix, dir, images.width, images.height);
  const text: Array<[string, string]> = [['prompt', pyJsonDumps(ctx.prompt)]];
  const pnginfo = ctx.extraData.extra_pnginfo;
  if (pnginfo && typeof pnginfo === 'object') {
    for (const [key, value] of Object.entries(pnginfo)) text.push([key, pyJsonDumps(value)]);
  }
  const results = images.frames.map((frame, batch) => {
    const name = `${target.filename.replaceAll('%batch_num%', String(batch))}_${String(target.counter + batch).padStart(5, '0')}_.png`;
    const png = encodeRgbPng(frame, images.width, images.height, { text, level: type === 'output' ? 4 : 1 });
    writeFileSync(join(target.folder, name), png);
    return { filename: name, subfolder: target.subfolder, type };
  });
  return { images: results };
}

function loadImage(inputs: Record<string, unknown>, ctx: NodeContext): NodeResult {
  const path = annotatedPath(String(inputs.image), ctx.dirs);
  if (!existsSync(path))
    throw new NodeError('FileNotFoundError', `[Errno 2] No such file or directory: '${path}'`);
  let decoded;
  try {
    decoded = decodePng(readFileSync(path));
  } catch {
    // PIL would read JPEG/WebP too; the stand-in only decodes PNG.
    throw new NodeError('PIL.UnidentifiedImageError', `cannot identify image file '${path}'`);
  }
  const { image: img, mask } = imageFromPng(decoded);
  return { outputs: [img, mask] };
}

async function standinSleep(inputs: Record<string, unknown>, ctx: NodeContext): Promise<NodeResult> {
  const img = image(inputs, 'image');
  const totalMs = typeof inputs.seconds === 'number' ? inputs.seconds * 1000 : ctx.defaultSleepMs();
  const steps = typeof inputs.steps === 'number' ? Math.max(1, Math.trunc(inputs.steps)) : 10;
  const preview = containImage({ ...img, frames: img.frames.slice(0, 1) }, 512);
  for (let step = 1; step <= steps; step++) {
    await sleep(totalMs / steps);
    await ctx.progress(step, steps, preview);
  }
  return { outputs: [img] };
}

function previewAny(inputs: Record<string, unknown>): NodeResult {
  const source = inputs.source;
  let value: string;
  if (source === null || source === undefined) value = 'None';
  else if (typeof source === 'string') value = source;
  else if (typeof source === 'number' || typeof source === 'boolean') value = pyStr(source);
  else if (isImageBatch(source))
    value = `tensor(<image batch of shape [${source.frames.length}, ${source.height}, ${source.width}, 3]>)`;
  else value = pyJsonDumps(source);
  return { outputs: [], ui: { text: [value] } };
}

const IMPLEMENTED: Record<string, NodeImpl> = {
  EmptyImage: (i) => ({
    outputs: [solidImage(Number(i.width), Number(i.height), Number(i.batch_size), Number(i.color))],
  }),
  ImageInvert: (i) => ({ outputs: [invertImage(image(i, 'image'))] }),
  ImageScale: (i) => ({
    outputs: [scaleImage(image(i, 'image'), Number(i.width), Number(i.height), String(i.crop))],
  }),
  LoadImage: loadImage,
  SaveImage: (i, ctx) => ({
    outputs: [],
    ui: saveImages(image(i, 'images'), String(i.filename_prefix), 'output', ctx),
  }),
  PreviewImage: (i, ctx) => ({
    outputs: [],
    ui: saveImages(image(i, 'images'), `ComfyUI_temp_${ctx.tempSuffix()}`, 'temp', ctx),
  }),
  GetImageSize: (i, ctx) => {
    const img = image(i, 'image');
    ctx.sendText(`width: ${img.width}, height: ${img.height}\n batch size: ${img.frames.length}`);
    return { outputs: [img.width, img.height, img.frames.length] };
  },
  PreviewAny: previewAny,
  StandinSleep: standinSleep,
};

/** More node classes the stand-in runs (media-nodes.ts registers the video and custom ones). */
export function registerNodes(more: Record<string, NodeImpl>): void {
  Object.assign(IMPLEMENTED, more);
}

export function runNode(
  classType: string,
  inputs: Record<string, unknown>,
  ctx: NodeContext,
): Promise<NodeResult> {
  const impl = IMPLEMENTED[classType];
  if (!impl) {
    return Promise.reject(
      new NodeError(
        'RuntimeError',
        `stand-in cannot run model nodes: ${classType} is not implemented by the ComfyUI stand-in`,
      ),
    );
  }
  return Promise.resolve().then(() => impl(inputs, ctx));
}

export function isImplemented(classType: string): boolean {
  return Object.hasOwn(IMPLEMENTED, classType);
}

/** IS_CHANGED: LoadImage hashes the file (NaN when unreadable → never cached); others: false. */
export function isChanged(classType: string, inputs: Record<string, unknown>, dirs: DataDirs): unknown {
  if (classType !== 'LoadImage') return false;
  try {
    return createHash('sha256')
      .update(readFileSync(annotatedPath(String(inputs.image), dirs)))
      .digest('hex');
  } catch {
    return NaN;
  }
}

/** ComfyUI draws PreviewImage's suffix from this alphabet (sic: no 'w', two 'p's). */
export function randomTempSuffix(): string {
  const alphabet = 'abcdefghijklmnopqrstupvxyz';
  return Array.from({ length: 5 }, () => alphabet[randomInt(alphabet.length)]).join('');
}
