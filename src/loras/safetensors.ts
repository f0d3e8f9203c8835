/**
 * The type check of a participant's LoRA upload: the file must be a `.safetensors` file, read as
 * the format defines it (https://github.com/huggingface/safetensors, "Format"): an 8-byte
 * little-endian header length N, N bytes of JSON (an object: tensor name → `{dtype, shape,
 * data_offsets: [begin, end]}`, plus an optional `__metadata__` of strings), then the tensors'
 * bytes, which the offsets must cover exactly. Pickles (`.ckpt`, `.pt`, `.bin`: Python code runs
 * when they load) and anything else are refused, so nothing but plain tensors reaches a GPU box.
 *
 * The check runs on the stream while it is stored ({@link SafetensorsCheck}): the header is parsed
 * as soon as it has arrived, the rest is only counted; a bad file fails the write, so it is never
 * kept.
 */
import { Transform, type TransformCallback } from 'node:stream';
import { AppError } from '../errors.js';

/**
 * The largest JSON header accepted. The reference implementation allows 100 MB; a real LoRA's
 * header (a few thousand tensors) is well under 1 MB, and this one is held in memory while parsed.
 */
export const MAX_HEADER_BYTES = 16 * 1024 * 1024;
/** Tensors per file (a Flux LoRA has ~1,000; an SDXL one ~2,500). */
const MAX_TENSORS = 100_000;

/** Bytes per element of each safetensors dtype. */
const DTYPE_BYTES: Record<string, number> = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E5M2: 1,
  F8_E4M3: 1,
  F8_E8M0: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  F64: 8,
  I64: 8,
  U64: 8,
  C64: 8,
};

const invalid = (why: string) =>
  new AppError('LORA_INVALID', `This is not a LoRA in .safetensors format: ${why}`);

/** The header as parsed: how many bytes of tensor data the file must hold after it. */
export interface SafetensorsHeader {
  headerLength: number;
  dataLength: number;
  tensors: number;
}

/** What the first bytes say the file is, when it is a known non-safetensors format. */
function sniffForeign(head: Buffer): string | null {
  // A torch.save file is a zip (PK\x03\x04) holding a pickle; a bare pickle starts with PROTO (0x80).
  if (head.length >= 4 && head.readUInt32BE(0) === 0x504b0304)
    return 'it is a PyTorch checkpoint (a zip holding a pickle, as .pt/.ckpt files are). Pickles can run code when loaded, so they are not accepted; convert it to .safetensors first.';
  if (head.length >= 2 && head[0] === 0x80 && head[1]! >= 2 && head[1]! <= 5)
    return 'it is a Python pickle (.ckpt/.pt/.bin). Pickles can run code when loaded, so they are not accepted; convert it to .safetensors first.';
  return null;
}

/** Parses and checks the JSON header; returns how many data bytes must follow. */
export function parseHeader(json: Buffer): { dataLength: number; tensors: number } {
  // The format allows trailing spaces as padding, nothing before the opening brace.
  if (json[0] !== 0x7b) throw invalid('its header is not a JSON object.');
  let header: unknown;
  try {
    header = JSON.parse(json.toString('utf8'));
  } catch {
    throw invalid('its header is not valid JSON.');
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header))
    throw invalid('its header is not a JSON object.');
  let end = 0;
  let tensors = 0;
  const ranges: [number, number][] = [];
  for (const [name, value] of Object.entries(header)) {
    if (name === '__metadata__') {
      const ok =
        typeof value === 'object' &&
        value !== null &&
        !Array.isArray(value) &&
        Object.values(value).every((v) => typeof v === 'string');
      if (!ok) throw invalid('its __metadata__ is not a map of strings.');
      continue;
    }
    if (++tensors > MAX_TENSORS) throw invalid(`it lists more than ${MAX_TENSORS} tensors.`);
    const t = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown } | null;
    const offsets = t?.data_offsets;
    const shape = t?.shape;
    const isCount = (n: unknown): n is number => Number.isSafeInteger(n) && (n as number) >= 0;
    if (
      typeof t !== 'object' ||
      t === null ||
      typeof t.dtype !== 'string' ||
      !Array.isArray(shape) ||
      !shape.every(isCount) ||
      !Array.isArray(offsets) ||
      offsets.length !== 2 ||
      !offsets.every(isCount)
    )
      throw invalid(`tensor "${name.slice(0, 80)}" is not described as {dtype, shape, data_offsets}.`);
    const [begin, stop] = offsets as [number, number];
    if (begin > stop) throw invalid(`tensor "${name.slice(0, 80)}" has offsets that run backwards.`);
    const size = DTYPE_BYTES[t.dtype];
    if (size === undefined)
      throw invalid(`tensor "${name.slice(0, 80)}" has an unknown dtype ${t.dtype.slice(0, 20)}.`);
    const elements = (shape as number[]).reduce((a, b) => a * b, 1);
    if (elements * size !== stop - begin)
      throw invalid(`tensor "${name.slice(0, 80)}" does not have the size its dtype and shape say.`);
    ranges.push([begin, stop]);
    end = Math.max(end, stop);
  }
  // The tensors must tile the data exactly: no overlaps, no holes (as the reference reader checks).
  ranges.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let at = 0;
  for (const [begin, stop] of ranges) {
    if (begin !== at) throw invalid('its tensors overlap or leave gaps in the data.');
    at = stop;
  }
  return { dataLength: end, tensors };
}

/**
 * A pass-through stream that checks a safetensors file on its way to storage and fails (with
 * LORA_INVALID) as soon as it can tell the file is not one: a foreign format from the first bytes,
 * a header length out of bounds, a bad header once it has arrived, and at the end a file whose
 * length differs from what the header describes (tensors whose offsets run past the end).
 */
export class SafetensorsCheck extends Transform {
  private head: Buffer[] = [];
  private headBytes = 0;
  private headerLength = -1;
  private parsed: { dataLength: number; tensors: number } | null = null;
  private total = 0;

  constructor(private readonly maxHeader = MAX_HEADER_BYTES) {
    super();
  }

  /** The checked header, once the stream has ended without error. */
  result(): SafetensorsHeader | null {
    if (!this.parsed) return null;
    return { headerLength: this.headerLength, ...this.parsed };
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.total += chunk.length;
    if (this.parsed) return cb(null, chunk);
    try {
      this.head.push(chunk);
      this.headBytes += chunk.length;
      this.checkHead();
    } catch (err) {
      return cb(err as Error);
    }
    cb(null, chunk);
  }

  private checkHead(): void {
    if (this.headBytes < 8) return;
    let buf = Buffer.concat(this.head);
    this.head = [buf];
    if (this.headerLength < 0) {
      const foreign = sniffForeign(buf);
      if (foreign) throw invalid(foreign);
      const n = buf.readBigUInt64LE(0);
      if (n < 2n) throw invalid('its header length is too small.');
      if (n > BigInt(this.maxHeader))
        throw invalid(
          `its header length (${n} bytes) is beyond the ${this.maxHeader}-byte limit; it is probably not a safetensors file.`,
        );
      this.headerLength = Number(n);
    }
    if (buf.length < 8 + this.headerLength) return;
    buf = buf.subarray(8, 8 + this.headerLength);
    this.parsed = parseHeader(buf);
    this.head = [];
  }

  override _flush(cb: TransformCallback): void {
    if (this.headerLength < 0) return cb(invalid('the file is too short to hold a header.'));
    if (!this.parsed) return cb(invalid('the file ends inside its header.'));
    const expected = 8 + this.headerLength + this.parsed.dataLength;
    if (this.total < expected)
      return cb(
        invalid(`its tensors' offsets run past the end of the file (${this.total} of ${expected} bytes).`),
      );
    if (this.total > expected)
      return cb(invalid(`it has ${this.total - expected} bytes after the last tensor.`));
    cb();
  }
}

/** Names a LoRA may have: one file name (no folders) ending in `.safetensors`, not hidden. */
export function checkLoraName(name: string): string {
  const trimmed = name.trim();
  const lower = trimmed.toLowerCase();
  if (/\.(ckpt|pt|pth|bin|pkl|pickle)$/.test(lower))
    throw invalid(
      'pickle-based files (.ckpt, .pt, .pth, .bin, .pkl) can run code when loaded and are not accepted; convert it to .safetensors first.',
    );
  if (!lower.endsWith('.safetensors')) throw invalid('the file name must end in .safetensors.');
  // eslint-disable-next-line no-control-regex
  if (/[/\\\u0000-\u001f\u007f]/.test(trimmed) || trimmed.startsWith('.') || trimmed.startsWith('_'))
    throw new AppError(
      'INVALID_PATH',
      'A LoRA name is one file name, without folders, control characters or a leading "." or "_".',
    );
  if (Buffer.byteLength(trimmed, 'utf8') > 200)
    throw new AppError('INVALID_PATH', 'A LoRA name may be at most 200 bytes long.');
  return trimmed;
}
