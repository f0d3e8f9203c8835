/**
 * Downloads one model file the way a GPU box needs it: free disk space checked against the size
 * the server announces before anything is written, bytes appended to a `.part` file outside every
 * folder ComfyUI reads, interrupted transfers resumed with HTTP `Range` (also across agent
 * restarts: the partial file stays), the sha256 computed on the way and compared before the one
 * atomic rename into `<models dir>/<folder>/<file>`. So ComfyUI never lists a file that is half
 * there or not the one asked for.
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, open, readFile, rename, rm, stat, statfs, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';

/** A download that cannot go on, with a short code and one sentence for the instructor. */
export class ModelDownloadError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'ModelDownloadError';
  }
}

/**
 * Abort reason that keeps the partial file (the agent is stopping: the download resumes when it is
 * asked again). Any other abort is a cancel and deletes it.
 */
export const KEEP_PARTIAL = 'agent stopping';

export interface DownloadProgress {
  phase: 'checking' | 'downloading' | 'verifying';
  received: number;
  total: number | null;
}

export interface DownloadOptions {
  url: string;
  /** Sent as `Authorization: Bearer`; fetch drops it on a redirect to another origin (a CDN). */
  token?: string | undefined;
  /** Expected sha256 (lower-case hex); a mismatch deletes the partial file. */
  sha256?: string | undefined;
  /** Where the file goes (inside ComfyUI's models folder). */
  dest: string;
  /** The partial file (same file system as `dest`, in a folder ComfyUI does not read). */
  part: string;
  signal: AbortSignal;
  onProgress: (p: DownloadProgress) => void;
  /** Free bytes on the file system of `dir`; injectable so tests can simulate a full disk. */
  freeBytes?: (dir: string) => Promise<number>;
  /** Failed tries in a row (no byte gained) before giving up. Default 5. */
  maxRetries?: number;
  /** First wait between tries, doubling up to 30 s. Default 1000 ms. */
  retryDelayMs?: number;
  /** A connection that delivers nothing for this long is dropped and resumed. Default 60 s. */
  stallMs?: number;
}

export interface DownloadResult {
  size: number;
  /** null when the file was already there (not re-read). */
  sha256: string | null;
  existing: boolean;
}

/** What the partial file was fetched from, so a resume never mixes two different files. */
interface PartMeta {
  url: string;
  validator: string | null;
}

export async function diskFreeBytes(dir: string): Promise<number> {
  const s = await statfs(dir);
  return s.bavail * s.bsize;
}

/** The URL without query and fragment, for messages and logs (signed URLs carry secrets there). */
export function displayUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.origin}${u.pathname}`;
  } catch {
    return '(invalid URL)';
  }
}

const sizeOf = async (path: string): Promise<number> => (await stat(path).catch(() => null))?.size ?? 0;

async function readMeta(path: string): Promise<PartMeta | null> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as PartMeta;
  } catch {
    return null;
  }
}

function httpError(status: number, url: string): ModelDownloadError {
  const where = displayUrl(url);
  if (status === 404)
    return new ModelDownloadError('http_404', `${where} answered 404 Not Found: check the URL.`);
  if (status === 401 || status === 403)
    return new ModelDownloadError(
      `http_${status}`,
      `${where} answered ${status}: the file needs a valid access token (a gated Hugging Face repository needs its terms accepted too).`,
    );
  return new ModelDownloadError(`http_${status}`, `${where} answered HTTP ${status}.`);
}

/** Worth another try: the server or the network may recover. */
const retryableStatus = (s: number) => s === 408 || s === 429 || s >= 500;

/** `bytes 100-199/1000` → {start 100, total 1000}. */
function contentRange(h: string | null): { start: number; total: number | null } | null {
  const m = /^bytes (\d+)-\d+\/(\d+|\*)$/.exec(h?.trim() ?? '');
  if (!m) return null;
  return { start: Number(m[1]), total: m[2] === '*' ? null : Number(m[2]) };
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });

async function hashFile(path: string, hash: Hash): Promise<void> {
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
}

/**
 * Downloads `opts.url` to `opts.dest`. Throws {@link ModelDownloadError} (code `cancelled` when
 * `opts.signal` aborted; the partial file is then removed).
 */
export async function downloadModel(opts: DownloadOptions): Promise<DownloadResult> {
  const existing = await stat(opts.dest).catch(() => null);
  if (existing?.isFile()) return { size: existing.size, sha256: null, existing: true };
  const metaPath = `${opts.part}.json`;
  const cleanup = () => Promise.all([rm(opts.part, { force: true }), rm(metaPath, { force: true })]);
  try {
    return await run(opts, metaPath);
  } catch (err) {
    if (opts.signal.aborted) {
      if (opts.signal.reason === KEEP_PARTIAL) {
        throw new ModelDownloadError('stopped', 'The worker stopped; the partial file is kept and resumes.');
      }
      await cleanup();
      throw new ModelDownloadError('cancelled', 'The download was cancelled; its partial file was deleted.');
    }
    if (err instanceof ModelDownloadError && err.code === 'checksum_mismatch') await cleanup();
    if (err instanceof ModelDownloadError) throw err;
    throw new ModelDownloadError('failed', (err as Error).message);
  }
}

async function run(opts: DownloadOptions, metaPath: string): Promise<DownloadResult> {
  const freeBytes = opts.freeBytes ?? diskFreeBytes;
  const maxRetries = opts.maxRetries ?? 5;
  const baseDelay = opts.retryDelayMs ?? 1000;
  const stallMs = opts.stallMs ?? 60_000;
  await mkdir(dirname(opts.part), { recursive: true });
  await mkdir(dirname(opts.dest), { recursive: true });

  // A partial file from another URL (or without its note) cannot be resumed.
  let meta = await readMeta(metaPath);
  if (meta?.url !== opts.url) {
    await rm(opts.part, { force: true });
    meta = null;
  }

  let failures = 0;
  let lastError = '';
  let total: number | null = null;
  let hash: Hash | undefined;
  for (;;) {
    if (opts.signal.aborted) throw new Error('aborted');
    if (failures > maxRetries) {
      throw new ModelDownloadError(
        'interrupted',
        `The download of ${displayUrl(opts.url)} kept failing (${lastError}); the partial file is kept and resumes when you start it again.`,
      );
    }
    if (failures > 0) await sleep(Math.min(30_000, baseDelay * 2 ** (failures - 1)), opts.signal);
    if (opts.signal.aborted) throw new Error('aborted');

    const have = await sizeOf(opts.part);
    opts.onProgress({ phase: 'checking', received: have, total });
    const headers: Record<string, string> = { 'accept-encoding': 'identity' };
    if (opts.token) headers.authorization = `Bearer ${opts.token}`;
    if (have > 0) {
      headers.range = `bytes=${have}-`;
      // Only resume the same version of the file: a changed one answers 200 with all of it.
      if (meta?.validator) headers['if-range'] = meta.validator;
    }
    const attempt = new AbortController();
    const onAbort = () => attempt.abort();
    opts.signal.addEventListener('abort', onAbort, { once: true });
    let stall: NodeJS.Timeout | undefined;
    const arm = () => {
      clearTimeout(stall);
      stall = setTimeout(() => attempt.abort(new Error(`nothing received for ${stallMs / 1000} s`)), stallMs);
    };
    try {
      arm();
      let res: Response;
      try {
        res = await fetch(opts.url, { headers, signal: attempt.signal, redirect: 'follow' });
      } catch (err) {
        lastError = (err as Error).message;
        failures++;
        continue;
      }
      if (res.status === 416 && have > 0) {
        // The partial file is as long as (or longer than) the file: start over.
        await res.body?.cancel();
        await rm(opts.part, { force: true });
        failures++;
        lastError = 'the server refused the resume range';
        continue;
      }
      if (!res.ok) {
        await res.body?.cancel();
        if (retryableStatus(res.status)) {
          lastError = `HTTP ${res.status}`;
          failures++;
          continue;
        }
        throw httpError(res.status, opts.url);
      }
      let start = 0;
      if (res.status === 206) {
        const range = contentRange(res.headers.get('content-range'));
        if (!range || range.start !== have) {
          await res.body?.cancel();
          await rm(opts.part, { force: true });
          lastError = 'the server answered a different range';
          failures++;
          continue;
        }
        start = have;
        total = range.total;
      } else {
        const len = res.headers.get('content-length');
        total = len !== null && /^\d+$/.test(len) ? Number(len) : null;
      }
      if (total !== null) {
        const need = total - start;
        const free = await freeBytes(dirname(opts.part));
        if (free < need) {
          await res.body?.cancel();
          throw new ModelDownloadError(
            'disk_full',
            `Not enough disk space for ${displayUrl(opts.url)}: it needs ${formatBytes(need)} more, the models disk has ${formatBytes(free)} free.`,
          );
        }
      }
      meta = { url: opts.url, validator: validatorOf(res.headers) };
      await writeFile(metaPath, JSON.stringify(meta), { mode: 0o600 });
      if (!res.body)
        throw new ModelDownloadError('failed', `${displayUrl(opts.url)} answered without a body.`);

      hash = createHash('sha256');
      if (start > 0) await hashFile(opts.part, hash);
      else await writeFile(opts.part, '', { mode: 0o644 });
      let received = start;
      let lastReport = 0;
      const h = hash;
      const report = () => opts.onProgress({ phase: 'downloading', received, total });
      report();
      try {
        await pipeline(
          Readable.fromWeb(res.body as WebReadableStream<Uint8Array>),
          async function* (src: AsyncIterable<Buffer>) {
            for await (const chunk of src) {
              arm();
              h.update(chunk);
              received += chunk.length;
              const now = performance.now();
              if (now - lastReport >= 100) {
                lastReport = now;
                report();
              }
              yield chunk;
            }
          },
          createWriteStream(opts.part, { flags: 'a' }),
        );
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOSPC') {
          throw new ModelDownloadError(
            'disk_full',
            `The models disk filled up while downloading ${displayUrl(opts.url)}; free some space and start it again (it resumes).`,
          );
        }
        lastError = (attempt.signal.reason as Error | undefined)?.message ?? (err as Error).message;
        // Progress made: the next try starts afresh from the new partial size.
        failures = received > have ? 1 : failures + 1;
        continue;
      }
      report();
      if (total !== null && received !== total) {
        lastError = `the connection ended after ${received} of ${total} bytes`;
        failures = received > have ? 1 : failures + 1;
        continue;
      }
      total = received;
      break;
    } finally {
      clearTimeout(stall);
      opts.signal.removeEventListener('abort', onAbort);
    }
  }

  opts.onProgress({ phase: 'verifying', received: total, total });
  const digest = hash!.digest('hex');
  if (opts.sha256 && digest !== opts.sha256) {
    throw new ModelDownloadError(
      'checksum_mismatch',
      `The file from ${displayUrl(opts.url)} has sha256 ${digest}, not the expected ${opts.sha256}; it was deleted.`,
    );
  }
  if (opts.signal.aborted) throw new Error('aborted');
  // Durable before it becomes visible: a crash right after the rename never leaves a torn file.
  const fh = await open(opts.part, 'r+');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(opts.part, opts.dest);
  await rm(metaPath, { force: true });
  return { size: total, sha256: digest, existing: false };
}

/** A strong ETag, else Last-Modified: what `If-Range` may carry. */
function validatorOf(h: Headers): string | null {
  const etag = h.get('etag');
  if (etag && !etag.startsWith('W/')) return etag;
  return h.get('last-modified');
}

export function formatBytes(n: number): string {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let v = n;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}
