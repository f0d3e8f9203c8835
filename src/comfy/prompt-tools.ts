/**
 * Reading and rewriting API-format prompts for the queue and the workers: which model files a
 * prompt loads (for affinity), its workflow's name, per-user output prefixes, uploaded-input
 * references, and the files a run produced. Every rewrite returns a new prompt; inputs are never
 * mutated.
 */
import type { ComfyPrompt, JobOutput } from '../store/types.js';
import {
  LOADER_INPUT_FOLDERS,
  NON_FILE_VALUES,
  folderForInputName,
  looksLikeModelFile,
} from './model-folders.js';
import type { ExecutedData, ExecutedMessage, HistoryEntry, InputSpec, ObjectInfo } from './protocol.js';
import { comboOptions, isLink } from './protocol.js';

type PromptLike = ComfyPrompt;
type PromptNodeLike = PromptLike[string];

/** A prompt is JSON: a JSON round trip copies it in about half of structuredClone's time. */
const copyPrompt = (prompt: PromptLike): PromptLike => JSON.parse(JSON.stringify(prompt)) as PromptLike;

const isDict = (v: unknown): v is Record<string, unknown> =>
  v !== null && typeof v === 'object' && !Array.isArray(v);

function entries(prompt: PromptLike): [string, PromptNodeLike][] {
  return Object.entries(prompt).filter(
    (e): e is [string, PromptNodeLike] =>
      isDict(e[1]) && typeof e[1].class_type === 'string' && isDict(e[1].inputs),
  );
}

function specOf(objectInfo: ObjectInfo | undefined, classType: string, input: string): InputSpec | undefined {
  const def = objectInfo?.[classType];
  return def?.input.required?.[input] ?? def?.input.optional?.[input];
}

// ---------------------------------------------------------------------------------------------
// Models
// ---------------------------------------------------------------------------------------------

export interface ModelRef {
  nodeId: string;
  classType: string;
  input: string;
  /** ComfyUI model folder name, e.g. `checkpoints`. */
  folder: string;
  /** The value as the prompt gives it, possibly with a subfolder (`flux/model.safetensors`). */
  name: string;
  /** `<folder>/<name>`: the form `Job.models` uses. */
  path: string;
}

/** comboFolders per object_info: an object_info never changes (each patch copies). */
const foldersByObjectInfo = new WeakMap<ObjectInfo, Map<string, string>>();

/**
 * Fingerprints of known loaders' option lists in this object_info → their folder. Made once per
 * object_info: every prompt is checked against one, and stringifying every loader's list of model
 * files each time cost 0.1 ms of every submit.
 */
function comboFolders(objectInfo: ObjectInfo): Map<string, string> {
  const hit = foldersByObjectInfo.get(objectInfo);
  if (hit) return hit;
  const map = new Map<string, string>();
  foldersByObjectInfo.set(objectInfo, map);
  for (const [classType, inputs] of Object.entries(LOADER_INPUT_FOLDERS)) {
    for (const [input, folder] of Object.entries(inputs)) {
      const options = comboOptions(specOf(objectInfo, classType, input));
      if (options && options.length > 0) map.set(JSON.stringify(options), folder);
    }
  }
  return map;
}

/**
 * Every model file the prompt's loader nodes reference, in prompt order (one entry per node
 * input). Links and placeholder values (`None`, VAELoader's `taesd`/`pixel_space`) are skipped.
 */
export function extractModelRefs(prompt: PromptLike, objectInfo?: ObjectInfo): ModelRef[] {
  const refs: ModelRef[] = [];
  const fingerprints = objectInfo ? comboFolders(objectInfo) : new Map<string, string>();
  for (const [nodeId, node] of entries(prompt)) {
    const known = LOADER_INPUT_FOLDERS[node.class_type];
    for (const [input, value] of Object.entries(node.inputs)) {
      if (typeof value !== 'string' || NON_FILE_VALUES.has(value)) continue;
      let folder: string | null = known?.[input] ?? null;
      if (!folder && !known) {
        const spec = specOf(objectInfo, node.class_type, input);
        const options = comboOptions(spec);
        if (spec && !options) continue; // declared, and not a combo: a text widget, not a file
        if (options && options.length > 0) folder = fingerprints.get(JSON.stringify(options)) ?? null;
        if (!folder && looksLikeModelFile(value)) folder = folderForInputName(input);
      }
      if (folder)
        refs.push({
          nodeId,
          classType: node.class_type,
          input,
          folder,
          name: value,
          path: `${folder}/${value}`,
        });
    }
  }
  return refs;
}

/** Unique `<folder>/<name>` model paths the prompt loads, e.g. `checkpoints/sdxl.safetensors`. */
export function extractModels(prompt: PromptLike, objectInfo?: ObjectInfo): string[] {
  return [...new Set(extractModelRefs(prompt, objectInfo).map((r) => r.path))];
}

// ---------------------------------------------------------------------------------------------
// Workflow name
// ---------------------------------------------------------------------------------------------

const MAX_NAME = 200;

function cleanName(v: unknown): string | null {
  if (typeof v !== 'string') return null;
  // eslint-disable-next-line no-control-regex
  const s = v.replace(/[\u0000-\u001f\u007f]+/g, ' ').trim();
  if (!s) return null;
  return s.length > MAX_NAME ? `${s.slice(0, MAX_NAME - 1)}…` : s;
}

/**
 * A human name for the workflow a prompt came from, read from `extra_data.extra_pnginfo.workflow`
 * (the UI-format graph the ComfyUI frontend sends along). The graph has no standard name field, so:
 * an explicit `name` / `extra.name` / `extra.title` a client set, else the name of the first active
 * top-level subgraph node (`definitions.subgraphs[].name`, how current templates are built), else
 * null. The workflow may also arrive as a JSON string.
 */
export function workflowName(extraData: unknown): string | null {
  if (!isDict(extraData)) return null;
  const pnginfo = extraData.extra_pnginfo;
  if (!isDict(pnginfo)) return null;
  let wf: unknown = pnginfo.workflow;
  if (typeof wf === 'string') {
    try {
      wf = JSON.parse(wf);
    } catch {
      return null;
    }
  }
  if (!isDict(wf)) return null;
  const extra = isDict(wf.extra) ? wf.extra : {};
  const explicit = cleanName(wf.name) ?? cleanName(extra.name) ?? cleanName(extra.title);
  if (explicit) return explicit;
  const subgraphs =
    isDict(wf.definitions) && Array.isArray(wf.definitions.subgraphs) ? wf.definitions.subgraphs : [];
  const names = new Map<string, string>();
  for (const sg of subgraphs) {
    const name = isDict(sg) ? cleanName(sg.name) : null;
    if (name && isDict(sg) && typeof sg.id === 'string') names.set(sg.id, name);
  }
  for (const node of Array.isArray(wf.nodes) ? wf.nodes : []) {
    // mode 2 = muted, 4 = bypassed: the frontend leaves those out of the prompt.
    if (!isDict(node) || node.mode === 2 || node.mode === 4 || typeof node.type !== 'string') continue;
    const name = names.get(node.type);
    if (name) return name;
  }
  return null;
}

// ---------------------------------------------------------------------------------------------
// Output prefixes
// ---------------------------------------------------------------------------------------------

/** Placeholders ComfyUI's `get_save_image_path` expands itself; kept as they are. */
const PREFIX_TOKEN = /(%(?:width|height|year|month|day|hour|minute|second)%)/;
const DEFAULT_PREFIX = 'ComfyUI';
const MAX_SEGMENT = 80;

/** One path segment with only letters, digits, `-`, `_`, `.` (never leading) and ComfyUI tokens. */
function safeSegment(raw: string, allowTokens: boolean): string {
  const parts = allowTokens ? raw.normalize('NFC').split(PREFIX_TOKEN) : [raw.normalize('NFC')];
  let out = parts
    .map((p, i) =>
      allowTokens && i % 2 === 1
        ? p
        : p
            .replace(/[^\p{L}\p{N}._-]+/gu, '_')
            .replace(/_{2,}/g, '_')
            .replace(/\.{2,}/g, '.'),
    )
    .join('');
  out = out.replace(/^[._]+/, '').replace(/_+$/, '');
  if (out.length > MAX_SEGMENT) out = out.slice(0, MAX_SEGMENT).replace(/[._]+$/, '');
  return out;
}

/** A prefix's own name part as safe relative segments: no `..`, no absolute path, no drive. */
export function sanitizePrefix(prefix: string): string[] {
  return prefix
    .split(/[\\/]+/)
    .map((s) => safeSegment(s, true))
    .filter((s) => s.length > 0 && s !== '.' && s !== '..');
}

export interface OutputNamespace {
  user: string;
  jobId: string;
}

function namespaceSegments(ns: OutputNamespace): [string, string] {
  const user = safeSegment(ns.user, false);
  const job = safeSegment(ns.jobId, false);
  if (!user || !job)
    throw new Error(`user "${ns.user}" and job id "${ns.jobId}" must contain safe characters`);
  return [user, job];
}

/** The namespaced prefix for one user prefix: `<user>/<jobId>/<their segments or ComfyUI>`. */
export function namespacedPrefix(prefix: unknown, ns: OutputNamespace): string {
  const own = typeof prefix === 'string' ? sanitizePrefix(prefix) : [];
  return [...namespaceSegments(ns), ...(own.length > 0 ? own : [DEFAULT_PREFIX])].join('/');
}

/**
 * The user's own subfolder of an output ComfyUI saved under a namespaced prefix
 * (`alice/<job>/video` → `video`), or null when the subfolder is outside the job's namespace.
 */
export function stripOutputNamespace(subfolder: string, ns: OutputNamespace): string | null {
  const root = namespaceSegments(ns).join('/');
  const s = subfolder.replace(/\\/g, '/');
  if (s === root) return '';
  return s.startsWith(`${root}/`) ? s.slice(root.length + 1) : null;
}

export interface PrefixRewrite {
  nodeId: string;
  classType: string;
  /** The previous value: a string, a link, or `undefined` when the input was absent. */
  from: unknown;
  to: string;
}

/** Text inputs of simple string nodes that a `filename_prefix` link may resolve to. */
const STRING_SOURCE_INPUTS = ['value', 'string', 'text', 'String'];

/**
 * Namespaces every output node's `filename_prefix` (SaveImage, SaveVideo, SaveAnimatedWEBP,
 * SaveAudio, VHS_VideoCombine, ...) under `<user>/<jobId>/`, keeping the user's own name part made
 * safe. A prefix linked from a simple string node (`PrimitiveString` & co.) is resolved and
 * inlined; any other link becomes `<user>/<jobId>/ComfyUI`. With `objectInfo`, nodes that declare
 * `filename_prefix` but leave it out get one (from the declared default).
 */
export function rewriteOutputPrefixes(
  prompt: PromptLike,
  ns: OutputNamespace & { objectInfo?: ObjectInfo },
): { prompt: ComfyPrompt; rewritten: PrefixRewrite[] } {
  namespaceSegments(ns);
  const out = copyPrompt(prompt);
  const rewritten: PrefixRewrite[] = [];
  for (const [nodeId, node] of entries(out)) {
    let from: unknown;
    let own: unknown;
    if (Object.prototype.hasOwnProperty.call(node.inputs, 'filename_prefix')) {
      from = node.inputs.filename_prefix;
      own = from;
      if (isLink(from)) {
        const source = prompt[from[0]];
        own = undefined;
        if (isDict(source) && isDict(source.inputs)) {
          const literal = STRING_SOURCE_INPUTS.map((k) => source.inputs[k]).find(
            (v) => typeof v === 'string',
          );
          if (literal !== undefined) own = literal;
        }
      }
    } else {
      const spec = specOf(ns.objectInfo, node.class_type, 'filename_prefix');
      if (!spec) continue;
      own = spec[1]?.default;
    }
    const to = namespacedPrefix(own, ns);
    node.inputs.filename_prefix = to;
    rewritten.push({ nodeId, classType: node.class_type, from, to });
  }
  return { prompt: out, rewritten };
}

// ---------------------------------------------------------------------------------------------
// Uploaded inputs
// ---------------------------------------------------------------------------------------------

export type InputFileKind = 'image' | 'video' | 'audio' | 'file' | 'latent';

/** Loader inputs that name a file in ComfyUI's input folder, for nodes object_info may lack. */
export const KNOWN_INPUT_FILES: Readonly<Record<string, Readonly<Record<string, InputFileKind>>>> = {
  LoadImage: { image: 'image' },
  LoadImageMask: { image: 'image' },
  LoadImageOutput: { image: 'image' },
  LoadVideo: { file: 'video' },
  LoadAudio: { audio: 'audio' },
  Load3D: { model_file: 'file' },
  Load3DAnimation: { model_file: 'file' },
  LoadLatent: { latent: 'latent' },
  VHS_LoadVideo: { video: 'video' },
  VHS_LoadAudioUpload: { audio: 'audio' },
};

const UPLOAD_FLAGS: readonly [string, InputFileKind][] = [
  ['image_upload', 'image'],
  ['video_upload', 'video'],
  ['audio_upload', 'audio'],
  ['file_upload', 'file'],
];

export interface InputReference {
  nodeId: string;
  classType: string;
  input: string;
  kind: InputFileKind;
  /** The value as written in the prompt, e.g. `sub/photo.png` or `photo.png [output]`. */
  value: string;
  /** Which ComfyUI folder: an ` [output]`-style annotation, else the input's default. */
  type: 'input' | 'output' | 'temp';
  subfolder: string;
  filename: string;
}

/** Splits `sub/dir/name.png [output]` into its folder type, subfolder and file name. */
export function parseAnnotatedName(
  value: string,
  defaultType: 'input' | 'output' | 'temp' = 'input',
): { type: 'input' | 'output' | 'temp'; subfolder: string; filename: string } {
  const m = /^(.*) \[(input|output|temp)\]$/.exec(value);
  const name = m ? (m[1] ?? '') : value;
  const type = m ? (m[2] as 'input' | 'output' | 'temp') : defaultType;
  const i = name.lastIndexOf('/');
  return { type, subfolder: i >= 0 ? name.slice(0, i) : '', filename: i >= 0 ? name.slice(i + 1) : name };
}

function uploadKind(
  objectInfo: ObjectInfo | undefined,
  classType: string,
  input: string,
): { kind: InputFileKind; defaultType: 'input' | 'output' | 'temp' } | null {
  const spec = specOf(objectInfo, classType, input);
  const opts = spec?.[1];
  const folder =
    opts?.image_folder === 'output' || opts?.image_folder === 'temp' ? opts.image_folder : 'input';
  if (opts) {
    for (const [flag, kind] of UPLOAD_FLAGS) if (opts[flag] === true) return { kind, defaultType: folder };
  }
  const known = KNOWN_INPUT_FILES[classType]?.[input];
  if (known) return { kind: known, defaultType: classType === 'LoadImageOutput' ? 'output' : folder };
  return null;
}

/**
 * Every node input naming an uploaded file: object_info's `image_upload` / `video_upload` /
 * `audio_upload` / `file_upload` inputs, and {@link KNOWN_INPUT_FILES}. Only literal string values
 * count (a linked value is not known before the run).
 */
export function inputReferences(prompt: PromptLike, objectInfo?: ObjectInfo): InputReference[] {
  const refs: InputReference[] = [];
  for (const [nodeId, node] of entries(prompt)) {
    for (const [input, value] of Object.entries(node.inputs)) {
      if (typeof value !== 'string' || value === '') continue;
      const k = uploadKind(objectInfo, node.class_type, input);
      if (!k) continue;
      refs.push({
        nodeId,
        classType: node.class_type,
        input,
        kind: k.kind,
        value,
        ...parseAnnotatedName(value, k.defaultType),
      });
    }
  }
  return refs;
}

export type InputMapping =
  | Readonly<Record<string, string>>
  | ReadonlyMap<string, string>
  | ((ref: InputReference) => string | undefined);

/**
 * Replaces uploaded-file references: `mapping` maps an old value (as written in the prompt) to the
 * new one, or is a function of the reference. Unmapped references stay as they are.
 */
export function rewriteInputs(
  prompt: PromptLike,
  mapping: InputMapping,
  objectInfo?: ObjectInfo,
): { prompt: ComfyPrompt; rewritten: (InputReference & { to: string })[] } {
  const lookup = (ref: InputReference): string | undefined => {
    if (typeof mapping === 'function') return mapping(ref);
    if (mapping instanceof Map) return mapping.get(ref.value);
    const rec = mapping as Readonly<Record<string, string>>;
    return Object.prototype.hasOwnProperty.call(rec, ref.value) ? rec[ref.value] : undefined;
  };
  const out = copyPrompt(prompt);
  const rewritten: (InputReference & { to: string })[] = [];
  for (const ref of inputReferences(prompt, objectInfo)) {
    const to = lookup(ref);
    const node = out[ref.nodeId];
    if (to === undefined || !node) continue;
    node.inputs[ref.input] = to;
    rewritten.push({ ...ref, to });
  }
  return { prompt: out, rewritten };
}

// ---------------------------------------------------------------------------------------------
// Outputs
// ---------------------------------------------------------------------------------------------

const FILE_FIELDS = new Set(['filename', 'subfolder', 'type']);

/**
 * A node's `ui` output as {@link JobOutput}s, in order: each file entry (`{filename, subfolder,
 * type, ...further fields}` in `output` or `temp`) as a file, every other entry (`animated` flags,
 * `text` strings, files in `input`, ...) as a non-file entry carrying the item as it is, so the
 * node's output can be rebuilt exactly as ComfyUI reported it.
 */
export function outputsOf(nodeId: string, output: unknown): JobOutput[] {
  const entries: JobOutput[] = [];
  if (!isDict(output)) return entries;
  for (const [kind, items] of Object.entries(output)) {
    if (!Array.isArray(items)) continue;
    for (const item of items) {
      const type =
        isDict(item) && typeof item.filename === 'string' && item.filename !== ''
          ? item.type === undefined || item.type === 'output'
            ? 'output'
            : item.type === 'temp'
              ? 'temp'
              : null
          : null;
      if (!type || !isDict(item)) {
        entries.push({ nodeId, filename: '', subfolder: '', type: 'output', kind, value: item as unknown });
        continue;
      }
      const extra = Object.fromEntries(Object.entries(item).filter(([k]) => !FILE_FIELDS.has(k)));
      entries.push({
        nodeId,
        filename: item.filename as string,
        subfolder: typeof item.subfolder === 'string' ? item.subfolder : '',
        type,
        kind,
        ...(Object.keys(extra).length > 0 ? { extra } : {}),
      });
    }
  }
  return entries;
}

/**
 * Outputs with a key each, to collect them without repeats from events and history alike: a
 * file by its location, a non-file entry by its node, kind and place among the node's entries.
 */
export function keyedOutputs(outputs: readonly JobOutput[]): [string, JobOutput][] {
  const seen = new Map<string, number>();
  return outputs.map((o) => {
    if (o.value === undefined) return [`${o.type}/${o.subfolder}/${o.filename}`, o];
    const at = `${o.nodeId}\u0000${o.kind}`;
    const n = seen.get(at) ?? 0;
    seen.set(at, n + 1);
    return [`${at}\u0000${n}`, o];
  });
}

/**
 * What an `executed` message reports (files in `images`, `gifs`, `videos`, `audio`, `3d`, ... each
 * `{filename, subfolder, type}`, and every non-file entry), as {@link JobOutput}s of the node.
 * Accepts the message or its data.
 */
export function outputsFromExecuted(msg: ExecutedMessage | ExecutedData): JobOutput[] {
  const data: ExecutedData =
    'type' in msg && msg.type === 'executed' && 'data' in msg
      ? (msg as ExecutedMessage).data
      : (msg as ExecutedData);
  return outputsOf(data.node, data.output);
}

/** What a finished prompt's history entry lists (files and other entries), node by node. */
export function outputsFromHistory(entry: HistoryEntry): JobOutput[] {
  return Object.entries(entry.outputs).flatMap(([nodeId, output]) => outputsOf(nodeId, output));
}
