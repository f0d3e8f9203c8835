/**
 * HTTP range requests and conditional GETs for served files (RFC 9110 §13, §14), as pure
 * functions: the one place that decides between 200, 206, 304 and 416 for a file, so `/view`,
 * the gallery and downloads all answer alike (see serve-file.ts for the fastify side).
 *
 * Decisions (documented in docs/api.md, "Files: ranges and caching"):
 * - Only the `bytes` unit, and only ONE range: a `Range` with several ranges is ignored and the
 *   whole file is served with 200 (RFC 9110 §14.2 lets a server ignore a Range; browsers and
 *   media players only ever ask for one, and a multipart/byteranges body buys them nothing).
 * - A syntactically invalid `Range` is ignored (200), as the RFC asks; a valid single range that
 *   starts at or past the end of the file (or `bytes=-0`) is 416.
 * - The ETag is strong and made of size and modification time: a file is only ever replaced as a
 *   whole (write beside, then rename / object put), which changes one of them.
 */

/** Inclusive byte positions, as in `Content-Range`. */
export interface ByteRange {
  start: number;
  end: number;
}

export type RangeSpec =
  /** No Range header, or one we ignore (other unit, bad syntax, several ranges). */
  { kind: 'none' } | { kind: 'range'; range: ByteRange } | { kind: 'unsatisfiable' };

/** Longer headers are not something a browser sends; ignored without looking further. */
const MAX_RANGE_HEADER = 1024;

/** A run of digits as a number; Infinity beyond what can be exact (no file is that large). */
function digits(s: string): number {
  if (!/^\d+$/.test(s)) return NaN;
  if (s.length > 15) return Number.POSITIVE_INFINITY;
  return Number(s);
}

/** Parses `Range` against a file of `size` bytes. Never throws. */
export function parseRange(header: string | undefined, size: number): RangeSpec {
  if (header === undefined || header.length > MAX_RANGE_HEADER) return { kind: 'none' };
  const m = /^\s*bytes\s*=\s*(.*)$/i.exec(header);
  if (!m) return { kind: 'none' };
  const specs = m[1]!
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (specs.length !== 1) return { kind: 'none' };
  const spec = specs[0]!;
  const dash = spec.indexOf('-');
  if (dash < 0) return { kind: 'none' };
  const first = spec.slice(0, dash).trim();
  const last = spec.slice(dash + 1).trim();
  if (first === '') {
    // suffix-range: the last n bytes
    const n = digits(last);
    if (Number.isNaN(n)) return { kind: 'none' };
    if (n === 0) return { kind: 'unsatisfiable' };
    // A zero-length file has no bytes to select; serve it whole (RFC 9110 §14.1.3 allows 200).
    if (size === 0) return { kind: 'none' };
    return { kind: 'range', range: { start: Math.max(0, size - n), end: size - 1 } };
  }
  const start = digits(first);
  if (Number.isNaN(start)) return { kind: 'none' };
  let end: number;
  if (last === '') end = size - 1;
  else {
    end = digits(last);
    if (Number.isNaN(end) || end < start) return { kind: 'none' };
  }
  if (start >= size) return { kind: 'unsatisfiable' };
  return { kind: 'range', range: { start, end: Math.min(end, size - 1) } };
}

export interface Validators {
  /** Strong entity tag, quoted. */
  etag: string;
  /** Modification time, whole seconds (HTTP dates have no more). */
  lastModified: Date;
}

/** ETag and Last-Modified of a file of this size and modification time. */
export function validatorsOf(size: number, mtimeMs: number): Validators {
  const ms = Math.max(0, Math.floor(mtimeMs));
  return {
    etag: `"${size.toString(16)}-${ms.toString(16)}"`,
    lastModified: new Date(Math.floor(ms / 1000) * 1000),
  };
}

/** The entity tags of an `If-None-Match` / `If-Match` list; `['*']` for the wildcard. */
function entityTags(header: string): string[] {
  if (header.trim() === '*') return ['*'];
  return header.match(/(?:W\/)?"[^"]*"/g) ?? [];
}

const opaque = (tag: string) => (tag.startsWith('W/') ? tag.slice(2) : tag);

function httpDate(s: string | undefined): number | null {
  if (!s) return null;
  const t = Date.parse(s);
  return Number.isNaN(t) ? null : t;
}

export interface FileRequestHeaders {
  range?: string | undefined;
  ifRange?: string | undefined;
  ifNoneMatch?: string | undefined;
  ifModifiedSince?: string | undefined;
}

export type FileDecision =
  { status: 304 } | { status: 200 } | { status: 206; range: ByteRange } | { status: 416 };

/**
 * What to answer a GET/HEAD for a file of `size` bytes with these validators, in the order of
 * RFC 9110 §13.2.2: If-None-Match (weak comparison) else If-Modified-Since → 304; then Range,
 * honoured only when If-Range (if any) matches the current ETag (strong) or Last-Modified exactly.
 */
export function decideFileResponse(headers: FileRequestHeaders, size: number, v: Validators): FileDecision {
  if (headers.ifNoneMatch !== undefined) {
    const tags = entityTags(headers.ifNoneMatch);
    if (tags.some((t) => t === '*' || opaque(t) === v.etag)) return { status: 304 };
  } else {
    const since = httpDate(headers.ifModifiedSince);
    if (since !== null && v.lastModified.getTime() <= since) return { status: 304 };
  }
  if (headers.range === undefined) return { status: 200 };
  if (headers.ifRange !== undefined && !ifRangeMatches(headers.ifRange, v)) return { status: 200 };
  const spec = parseRange(headers.range, size);
  if (spec.kind === 'none') return { status: 200 };
  if (spec.kind === 'unsatisfiable') return { status: 416 };
  return { status: 206, range: spec.range };
}

function ifRangeMatches(ifRange: string, v: Validators): boolean {
  const value = ifRange.trim();
  // An entity tag: strong comparison, so a weak tag never matches (RFC 9110 §13.1.5).
  if (value.startsWith('"') || value.startsWith('W/')) return value === v.etag;
  const t = httpDate(value);
  return t !== null && t === v.lastModified.getTime();
}

/** `Content-Range` of a 206. */
export const contentRange = (r: ByteRange, size: number) => `bytes ${r.start}-${r.end}/${size}`;

/** `Content-Range` of a 416. */
export const unsatisfiedRange = (size: number) => `bytes */${size}`;
