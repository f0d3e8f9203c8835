/**
 * Image tensors and PNG I/O for the model-free nodes. ComfyUI keeps images as float32 tensors
 * in [0, 1] (batch, height, width, channel); the stand-in keeps one Float32Array (RGB,
 * interleaved) per batch item and rounds like torch/numpy do, so pixel values match ComfyUI's.
 */
import { PNG } from 'pngjs';

export interface ImageBatch {
  kind: 'IMAGE';
  width: number;
  height: number;
  /** One RGB float32 buffer per batch item, row-major, values in [0, 1]. */
  frames: Float32Array[];
}

export interface MaskBatch {
  kind: 'MASK';
  width: number;
  height: number;
  frames: Float32Array[];
}

const f32 = Math.fround;

export function isImageBatch(v: unknown): v is ImageBatch {
  return typeof v === 'object' && v !== null && (v as { kind?: unknown }).kind === 'IMAGE';
}

/** EmptyImage: every pixel is `color` (0xRRGGBB), channel values stored as float32. */
export function solidImage(width: number, height: number, batch: number, color: number): ImageBatch {
  const rgb = [(color >> 16) & 0xff, (color >> 8) & 0xff, color & 0xff].map((c) => f32(c / 0xff));
  const frames = Array.from({ length: batch }, () => {
    const frame = new Float32Array(width * height * 3);
    for (let i = 0; i < frame.length; i += 3) frame.set(rgb, i);
    return frame;
  });
  return { kind: 'IMAGE', width, height, frames };
}

/** ImageInvert: `1.0 - image`. */
export function invertImage(image: ImageBatch): ImageBatch {
  const frames = image.frames.map((frame) => frame.map((v) => 1 - v));
  return { ...image, frames };
}

/** Center crop to the target aspect ratio, like ComfyUI's common_upscale with crop="center". */
function centerCropBox(w: number, h: number, targetW: number, targetH: number) {
  const oldAspect = w / h;
  const newAspect = targetW / targetH;
  let x = 0;
  let y = 0;
  if (oldAspect > newAspect) x = Math.round((w - w * (newAspect / oldAspect)) / 2);
  else if (oldAspect < newAspect) y = Math.round((h - h * (oldAspect / newAspect)) / 2);
  return { x, y, w: w - 2 * x, h: h - 2 * y };
}

/**
 * ImageScale. Every method is served with torch's "nearest-exact" sampling: the stand-in cares
 * about sizes and plausible pixels, not about resampling quality.
 */
export function scaleImage(image: ImageBatch, width: number, height: number, crop: string): ImageBatch {
  if (width === 0 && height === 0) return image;
  if (width === 0) width = Math.max(1, Math.round((image.width * height) / image.height));
  if (height === 0) height = Math.max(1, Math.round((image.height * width) / image.width));
  const box =
    crop === 'center'
      ? centerCropBox(image.width, image.height, width, height)
      : { x: 0, y: 0, w: image.width, h: image.height };
  const scaleX = f32(box.w / width);
  const scaleY = f32(box.h / height);
  const srcX = Array.from({ length: width }, (_, x) => Math.min(Math.floor((x + 0.5) * scaleX), box.w - 1));
  const frames = image.frames.map((src) => {
    const out = new Float32Array(width * height * 3);
    for (let y = 0; y < height; y++) {
      const sy = Math.min(Math.floor((y + 0.5) * scaleY), box.h - 1) + box.y;
      for (let x = 0; x < width; x++) {
        const s = (sy * image.width + srcX[x]! + box.x) * 3;
        out.set(src.subarray(s, s + 3), (y * width + x) * 3);
      }
    }
    return out;
  });
  return { kind: 'IMAGE', width, height, frames };
}

/** numpy's `np.clip(255. * v, 0, 255).astype(np.uint8)` on float32 data. */
export function toByte(v: number): number {
  const scaled = f32(255 * v);
  if (!(scaled > 0)) return 0;
  return scaled >= 255 ? 255 : Math.trunc(scaled);
}

function frameToRgbBytes(frame: Float32Array): Buffer {
  const out = Buffer.alloc(frame.length);
  for (let i = 0; i < frame.length; i++) out[i] = toByte(frame[i]!);
  return out;
}

// --- PNG chunks -----------------------------------------------------------------------------

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

function crc32(buf: Buffer): number {
  let c = 0xffffffff;
  for (const byte of buf) c = CRC_TABLE[(c ^ byte) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function pngChunk(type: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])), 0);
  return Buffer.concat([head, data, crc]);
}

/** Inserts tEXt chunks right after IHDR, where PIL writes SaveImage's `prompt`/`workflow`. */
function withTextChunks(png: Buffer, text: Array<[string, string]>): Buffer {
  if (text.length === 0) return png;
  const ihdrEnd = 8 + 8 + 13 + 4; // signature + IHDR header + IHDR data + CRC
  const chunks = text.map(([key, value]) =>
    pngChunk(
      'tEXt',
      Buffer.concat([Buffer.from(key, 'latin1'), Buffer.from([0]), Buffer.from(value, 'latin1')]),
    ),
  );
  return Buffer.concat([png.subarray(0, ihdrEnd), ...chunks, png.subarray(ihdrEnd)]);
}

export interface EncodeOptions {
  /** tEXt entries (ASCII), e.g. `[["prompt", "{...}"]]`. */
  text?: Array<[string, string]>;
  /** zlib level: ComfyUI uses 4 for SaveImage and 1 for previews. */
  level?: number;
}

/** An 8-bit RGB PNG of one batch item, like `Image.fromarray(uint8).save(...)`. */
export function encodeRgbPng(
  frame: Float32Array,
  width: number,
  height: number,
  opts: EncodeOptions = {},
): Buffer {
  const png = new PNG({ width, height, colorType: 2, inputColorType: 2, inputHasAlpha: false });
  png.data = frameToRgbBytes(frame);
  const bytes = PNG.sync.write(png, {
    colorType: 2,
    inputColorType: 2,
    inputHasAlpha: false,
    deflateLevel: opts.level ?? 4,
  });
  return withTextChunks(bytes, opts.text ?? []);
}

export function encodeRgbaPng(rgba: Buffer, width: number, height: number): Buffer {
  const png = new PNG({ width, height });
  png.data = rgba;
  return PNG.sync.write(png, { deflateLevel: 4 });
}

export interface DecodedPng {
  width: number;
  height: number;
  /** 8-bit RGBA, whatever the file's colour type. */
  rgba: Buffer;
  hasAlpha: boolean;
}

/** Throws on anything that is not a readable PNG. */
export function decodePng(bytes: Buffer): DecodedPng {
  const png = PNG.sync.read(bytes);
  return { width: png.width, height: png.height, rgba: png.data, hasAlpha: png.alpha };
}

/** LoadImage's tensors: RGB image and `1 - alpha` mask (a 64×64 zero mask without alpha). */
export function imageFromPng(decoded: DecodedPng): { image: ImageBatch; mask: MaskBatch } {
  const { width, height, rgba } = decoded;
  const frame = new Float32Array(width * height * 3);
  const alpha = new Float32Array(width * height);
  for (let p = 0; p < width * height; p++) {
    for (let c = 0; c < 3; c++) frame[p * 3 + c] = f32(rgba[p * 4 + c]! / 255);
    alpha[p] = 1 - f32(rgba[p * 4 + 3]! / 255);
  }
  const mask: MaskBatch = decoded.hasAlpha
    ? { kind: 'MASK', width, height, frames: [alpha] }
    : { kind: 'MASK', width: 64, height: 64, frames: [new Float32Array(64 * 64)] };
  return { image: { kind: 'IMAGE', width, height, frames: [frame] }, mask };
}

/** Shrinks an image to fit `maxSize` (ImageOps.contain), for live previews. */
export function containImage(image: ImageBatch, maxSize: number): ImageBatch {
  const ratio = Math.min(maxSize / image.width, maxSize / image.height);
  if (ratio >= 1) return image;
  const width = Math.max(1, Math.round(image.width * ratio));
  const height = Math.max(1, Math.round(image.height * ratio));
  return scaleImage(image, width, height, 'disabled');
}

/** A torch-like one-line description of a value, for `current_inputs` in execution errors. */
export function describeValue(v: unknown): unknown {
  if (v === null || ['string', 'number', 'boolean'].includes(typeof v)) return v;
  if (isImageBatch(v))
    return `tensor(<image batch of shape [${v.frames.length}, ${v.height}, ${v.width}, 3]>)`;
  return String(v);
}
