/**
 * Brotli and gzip copies of a frontend's text files, made once when a version is stored and kept
 * on disk beside it, so that twenty participants opening ComfyUI over one venue link get its
 * 15 MB of JavaScript as about 3 MB, and the server compresses nothing per request.
 *
 * Files are keyed by their sha256 (contents shared by several versions are compressed once):
 *
 *     <dir>/<sha256>.br     brotli, quality 11 (slow to make, smallest to send)
 *     <dir>/<sha256>.gz     gzip, level 9, for clients without brotli
 *     <dir>/<sha256>.none   made empty when compression saves too little to be worth it
 *
 * Compression runs in a worker thread at the lowest priority, one file at a time, so it neither
 * blocks the event loop nor takes CPU others need; until a file's copies exist it is served
 * uncompressed.
 */
import { randomBytes } from 'node:crypto';
import { readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';

export type Encoding = 'br' | 'gzip';

/** One stored compressed copy. */
export interface EncodedCopy {
  path: string;
  size: number;
}

export type EncodedCopies = Partial<Record<Encoding, EncodedCopy>>;

/** A file to compress: its content hash and where its bytes are. */
export interface CompressJob {
  sha256: string;
  path: string;
  rel: string;
}

const SUFFIX: Record<Encoding, string> = { br: '.br', gzip: '.gz' };
const SKIP = '.none';
const FILE_MODE = 0o600;

/**
 * Extensions worth compressing: text and uncompressed fonts. Images, woff/woff2, audio and video
 * are compressed already.
 */
const COMPRESSIBLE = new Set([
  '.js',
  '.mjs',
  '.cjs',
  '.css',
  '.html',
  '.htm',
  '.json',
  '.map',
  '.svg',
  '.txt',
  '.md',
  '.xml',
  '.csv',
  '.wasm',
  '.ttf',
  '.otf',
  '.eot',
  '.ico',
]);

/** Smaller files fit in a packet or two either way. */
const MIN_SIZE = 512;
/** A copy is kept only when it is at most this share of the original. */
const MAX_RATIO = 0.9;

/** Frontend bundles are a few MB at most; a larger file is read whole to compress, so not at all. */
const MAX_SIZE = 32 * 1024 * 1024;

export function isCompressible(rel: string, size: number): boolean {
  return size >= MIN_SIZE && size <= MAX_SIZE && COMPRESSIBLE.has(extname(rel).toLowerCase());
}

/**
 * The compressing thread: brotli at quality 11 takes about a minute of CPU for ComfyUI's frontend,
 * so it runs in a worker thread that lowers its own priority (nice 19, Linux: a thread's id is a
 * process id to setpriority), giving way to the event loop, to ComfyUI and to everything else on
 * the machine while using what is idle. Plain JavaScript, so it runs the same under tsx and from
 * dist/.
 */
const THREAD_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { readlinkSync } = require('node:fs');
const { setPriority } = require('node:os');
const zlib = require('node:zlib');
try { setPriority(Number(readlinkSync('/proc/thread-self').split('/').pop()), 19); } catch {}
parentPort.on('message', ({ id, data, enc, text }) => {
  try {
    const out = enc === 'gzip'
      ? zlib.gzipSync(data, { level: 9 })
      : zlib.brotliCompressSync(data, { params: {
          [zlib.constants.BROTLI_PARAM_QUALITY]: zlib.constants.BROTLI_MAX_QUALITY,
          [zlib.constants.BROTLI_PARAM_SIZE_HINT]: data.length,
          [zlib.constants.BROTLI_PARAM_MODE]: text ? zlib.constants.BROTLI_MODE_TEXT : zlib.constants.BROTLI_MODE_GENERIC,
        } });
    parentPort.postMessage({ id, out });
  } catch (err) {
    parentPort.postMessage({ id, error: String(err) });
  }
});
`;

type Pending = Map<number, { resolve: (b: Buffer) => void; reject: (e: Error) => void }>;

/** One compressing thread, started on first use; {@link stop} ends it, work in hand included. */
class CompressThread {
  private current: { worker: Worker; pending: Pending } | null = null;
  private next = 0;

  encode(data: Buffer, enc: Encoding, rel: string): Promise<Buffer> {
    const { worker, pending } = (this.current ??= this.start());
    const id = this.next++;
    const text = !['.wasm', '.ttf', '.otf', '.eot', '.ico'].includes(extname(rel).toLowerCase());
    return new Promise((resolve, reject) => {
      pending.set(id, { resolve, reject });
      worker.postMessage({ id, data, enc, text });
    });
  }

  async stop(): Promise<void> {
    const c = this.current;
    this.current = null;
    if (c) await c.worker.terminate();
  }

  private start(): { worker: Worker; pending: Pending } {
    const worker = new Worker(THREAD_SOURCE, { eval: true });
    const pending: Pending = new Map();
    const c = { worker, pending };
    const failAll = (err: Error) => {
      for (const p of pending.values()) p.reject(err);
      pending.clear();
    };
    // Never what keeps the process alive.
    worker.unref();
    worker.on('message', (m: { id: number; out?: Uint8Array; error?: string }) => {
      const p = pending.get(m.id);
      pending.delete(m.id);
      if (!p) return;
      if (m.out) p.resolve(Buffer.from(m.out.buffer, m.out.byteOffset, m.out.byteLength));
      else p.reject(new Error(m.error ?? 'compression failed'));
    });
    worker.on('error', failAll);
    worker.on('exit', () => {
      if (this.current === c) this.current = null;
      failAll(new Error('the compressing thread stopped'));
    });
    return c;
  }
}

export class Precompressor {
  /** sha256 → its copies (an empty object: compressed, not worth keeping). */
  private readonly known = new Map<string, EncodedCopies>();
  private queue: CompressJob[] = [];
  private running: Promise<void> | null = null;
  private closed = false;
  private readonly thread = new CompressThread();

  constructor(
    private readonly dir: string,
    private readonly tmpDir: string,
    private readonly logger: Logger,
  ) {}

  /** Learns which copies are on disk already (at start-up). */
  async load(): Promise<void> {
    // Copies being written when the process last stopped.
    for (const name of await readdir(this.tmpDir)) {
      if (name.startsWith('c-')) await rm(join(this.tmpDir, name), { force: true });
    }
    for (const name of await readdir(this.dir)) {
      const m = /^([0-9a-f]{64})(\.br|\.gz|\.none)$/.exec(name);
      if (!m) continue;
      const sha = m[1]!;
      const copies = this.known.get(sha) ?? {};
      this.known.set(sha, copies);
      if (m[2] === SKIP) continue;
      const size = (await stat(join(this.dir, name)).catch(() => null))?.size;
      if (size !== undefined) copies[m[2] === '.br' ? 'br' : 'gzip'] = { path: join(this.dir, name), size };
    }
  }

  /** The copies of a content, if made (none while it waits its turn, or when not worth it). */
  copiesOf(sha256: string): EncodedCopies | undefined {
    return this.known.get(sha256);
  }

  /** Queues the files not compressed yet; returns at once (see {@link idle}). */
  add(jobs: readonly CompressJob[]): void {
    if (this.closed) return;
    const queued = new Set(this.queue.map((j) => j.sha256));
    for (const j of jobs) {
      if (this.known.has(j.sha256) || queued.has(j.sha256)) continue;
      queued.add(j.sha256);
      this.queue.push(j);
    }
    if (this.queue.length > 0) this.running ??= this.drain();
  }

  /** Resolves once every queued file has been compressed (for tests, benches and shutdown). */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  /**
   * Stops: drops what waits and lets the file in hand finish (zlib's work cannot be cancelled),
   * so nothing is written into the folder once this resolves.
   */
  async close(): Promise<void> {
    this.closed = true;
    this.queue = [];
    await this.thread.stop();
    await this.idle();
  }

  /** Deletes the copies of contents no kept version names. */
  async prune(named: ReadonlySet<string>): Promise<void> {
    this.queue = this.queue.filter((j) => named.has(j.sha256));
    for (const name of await readdir(this.dir)) {
      const sha = name.slice(0, 64);
      if (named.has(sha)) continue;
      this.known.delete(sha);
      await rm(join(this.dir, name), { force: true });
    }
  }

  private async drain(): Promise<void> {
    const started = Date.now();
    let files = 0;
    let before = 0;
    let after = 0;
    try {
      for (let job = this.queue.shift(); job; job = this.queue.shift()) {
        try {
          const data = await readFile(job.path);
          const copies: EncodedCopies = {};
          for (const enc of ['br', 'gzip'] as const) {
            const out = await this.thread.encode(data, enc, job.rel);
            if (this.closed) return;
            if (out.length > data.length * MAX_RATIO) continue;
            copies[enc] = await this.write(job.sha256 + SUFFIX[enc], out);
          }
          if (!copies.br && !copies.gzip) await this.write(job.sha256 + SKIP, Buffer.alloc(0));
          this.known.set(job.sha256, copies);
          files += 1;
          before += data.length;
          after += copies.br?.size ?? data.length;
        } catch (err) {
          if (this.closed) return;
          // A version deleted meanwhile, a full disk: that file is served uncompressed.
          this.logger.warn({ err, file: job.rel }, 'could not precompress a frontend file');
        }
      }
    } finally {
      this.running = null;
      // Idle until the next version: no thread kept for nothing.
      if (this.queue.length === 0) void this.thread.stop();
    }
    if (files > 0) {
      this.logger.info(
        { files, bytes: before, brotliBytes: after, ms: Date.now() - started },
        'precompressed frontend files',
      );
    }
  }

  private async write(name: string, data: Buffer): Promise<EncodedCopy> {
    const tmp = join(this.tmpDir, `c-${randomBytes(6).toString('hex')}`);
    await writeFile(tmp, data, { mode: FILE_MODE });
    const path = join(this.dir, name);
    await rename(tmp, path);
    return { path, size: data.length };
  }
}
