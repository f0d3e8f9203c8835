/**
 * ComfyUI's model-free video and animation save nodes (CreateVideo, SaveVideo, SaveAnimatedWEBP)
 * and one recorded custom node (VHS_VideoCombine, from test/fixtures/custom-node-outputs/): each
 * writes its files under exactly the names the real node gives them and answers the same `ui`
 * output, with every non-file entry (`animated`) and custom field (`format`, `frame_rate`,
 * `workflow`, `fullpath`). The file contents are stand-ins: a real H.264 MP4
 * (test/fixtures/video/seek-4s.mp4) for every video and a one-frame WEBP container, whatever the
 * frames were.
 */
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { encodeRgbPng, type ImageBatch } from './image.js';
import { image, registerNodes, saveImagePath, type NodeContext, type NodeResult } from './nodes.js';
import type { NodeDef } from './object-info.js';

const VIDEO_FIXTURE = fileURLToPath(new URL('../../fixtures/video/seek-4s.mp4', import.meta.url));
const VHS_FIXTURE = fileURLToPath(
  new URL('../../fixtures/custom-node-outputs/vhs_video_combine.json', import.meta.url),
);

interface VhsRecording {
  node: { class_type: string };
  executed: { data: { output: { gifs: Record<string, unknown>[] } } };
  history_outputs: Record<string, { gifs: Record<string, unknown>[] }>;
  object_info: NodeDef;
}

let vhs: VhsRecording | undefined;
const vhsRecording = (): VhsRecording =>
  (vhs ??= JSON.parse(readFileSync(VHS_FIXTURE, 'utf8')) as VhsRecording);

/**
 * The recorded VHS_VideoCombine history outputs (node "12") as a participant sees them: ComfyUI's
 * own entry, fields in order, less the worker's disk path (`fullpath`).
 */
export function recordedVhsOutputs(): Record<string, { gifs: Record<string, unknown>[] }> {
  return Object.fromEntries(
    Object.entries(vhsRecording().history_outputs).map(([node, { gifs }]) => [
      node,
      { gifs: gifs.map(({ fullpath: _, ...rest }) => rest) },
    ]),
  );
}

/** The recorded custom nodes' object_info entries (offered with `customNodes: true`). */
export function customNodeDefs(): Record<string, NodeDef> {
  return { VHS_VideoCombine: vhsRecording().object_info };
}

const pad5 = (n: number) => String(n).padStart(5, '0');

/** A minimal lossy WEBP (RIFF container, one 1×1 VP8 frame): right magic, not the frames. */
function tinyWebp(): Buffer {
  const vp8 = Buffer.from('9d012a0100010002003425a00274ba01f80003b000fef7a700', 'hex');
  const frame = Buffer.concat([Buffer.from('VP8 '), u32(vp8.length + 10), Buffer.alloc(10), vp8]);
  return Buffer.concat([Buffer.from('RIFF'), u32(frame.length + 4), Buffer.from('WEBP'), frame]);
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
}

interface Video {
  images: ImageBatch;
  fps: number;
}

function video(inputs: Record<string, unknown>): Video {
  const v = inputs.video as Partial<Video> | undefined;
  if (!v || !v.images) throw new Error('SaveVideo needs a VIDEO input');
  return v as Video;
}

/**
 * The `videoBytes` knob's file: the fixture MP4, then bytes of a fixed pseudo-random pattern whose
 * length (1 MiB + 7) is no power of two, so a chunk lost, doubled or shifted on the way changes the
 * hash. Written a chunk at a time (a 2 GB output never sits in the stand-in's memory).
 */
async function writeSizedVideo(path: string, size: number): Promise<void> {
  const head = readFileSync(VIDEO_FIXTURE).subarray(0, size);
  const pattern = Buffer.alloc(1024 * 1024 + 7);
  let x = 0x9e3779b9;
  for (let i = 0; i < pattern.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    pattern[i] = x & 0xff;
  }
  const fh = await open(path, 'w');
  try {
    await fh.write(head);
    for (let at = head.length; at < size;) {
      const n = Math.min(pattern.length, size - at);
      await fh.write(pattern, 0, n);
      at += n;
    }
  } finally {
    await fh.close();
  }
}

/** comfy_extras/nodes_video.py SaveVideo: `<prefix>_<counter:05>_.mp4`, shown as an animated image. */
async function saveVideo(inputs: Record<string, unknown>, ctx: NodeContext): Promise<NodeResult> {
  const v = video(inputs);
  const t = saveImagePath(String(inputs.filename_prefix), ctx.dirs.output, v.images.width, v.images.height);
  const file = `${t.filename}_${pad5(t.counter)}_.mp4`;
  const size = ctx.videoBytes();
  if (size > 0) await writeSizedVideo(join(t.folder, file), size);
  else writeFileSync(join(t.folder, file), readFileSync(VIDEO_FIXTURE));
  return {
    outputs: [],
    ui: { images: [{ filename: file, subfolder: t.subfolder, type: 'output' }], animated: [true] },
  };
}

/** nodes_images.py SaveAnimatedWEBP: one file per `num_frames` frames (all of them by default). */
function saveAnimatedWebp(inputs: Record<string, unknown>, ctx: NodeContext): NodeResult {
  const images = image(inputs, 'images');
  const t = saveImagePath(String(inputs.filename_prefix), ctx.dirs.output, images.width, images.height);
  const perFile = Number(inputs.num_frames ?? 0) || images.frames.length;
  const results = [];
  for (let i = 0, c = t.counter; i < images.frames.length; i += perFile, c++) {
    const file = `${t.filename}_${pad5(c)}_.webp`;
    writeFileSync(join(t.folder, file), tinyWebp());
    results.push({ filename: file, subfolder: t.subfolder, type: 'output' });
  }
  return { outputs: [], ui: { images: results, animated: [true] } };
}

/**
 * VHS_VideoCombine: `<prefix>_<counter:05>.png` (the workflow) and `.mp4` beside it, the counter
 * one above the highest `<prefix>_<digits>…` in the folder; `ui.gifs` as recorded, with this
 * run's names.
 */
function vhsVideoCombine(inputs: Record<string, unknown>, ctx: NodeContext): NodeResult {
  const images = image(inputs, 'images');
  const t = saveImagePath(String(inputs.filename_prefix), ctx.dirs.output, images.width, images.height);
  const escaped = t.filename.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const matcher = new RegExp(`^${escaped}_(\\d+)\\D*\\..+$`, 'i');
  let max = 0;
  for (const f of readdirSync(t.folder)) {
    const m = matcher.exec(f);
    if (m) max = Math.max(max, Number(m[1]));
  }
  const counter = pad5(max + 1);
  const png = `${t.filename}_${counter}.png`;
  const mp4 = `${t.filename}_${counter}.mp4`;
  writeFileSync(join(t.folder, png), encodeRgbPng(images.frames[0]!, images.width, images.height));
  writeFileSync(join(t.folder, mp4), readFileSync(VIDEO_FIXTURE));
  const recorded = vhsRecording().executed.data.output.gifs[0]!;
  const entry = {
    ...recorded,
    filename: mp4,
    subfolder: t.subfolder,
    type: 'output',
    format: String(inputs.format ?? recorded.format),
    frame_rate: Number(inputs.frame_rate ?? recorded.frame_rate),
    workflow: png,
    fullpath: join(t.folder, mp4),
  };
  return { outputs: [[true, [join(t.folder, png), join(t.folder, mp4)]]], ui: { gifs: [entry] } };
}

registerNodes({
  CreateVideo: (i) => ({ outputs: [{ images: image(i, 'images'), fps: Number(i.fps) } satisfies Video] }),
  SaveVideo: saveVideo,
  SaveAnimatedWEBP: saveAnimatedWebp,
  VHS_VideoCombine: vhsVideoCombine,
});
