/**
 * Reads the web frontend a ComfyUI serves, over HTTP, as a list of files (site path, size,
 * sha256). ComfyUI serves `index.html` at `/` and the rest of its web root statically, and the
 * custom nodes' web folders at `/extensions/<name>/`, but it cannot list a folder: so the crawl
 * starts at `/` and at the files `GET /extensions` lists, and follows the references it finds in
 * HTML, CSS and JS (rules in ./frontend-refs.ts). A candidate that answers 404 is simply not a
 * file. Binary files are hashed as they stream past; only text that is searched for references is
 * held in memory (at most {@link PARSE_MAX_BYTES} per file).
 *
 * Bounded by the protocol's FRONTEND_LIMITS (files, bytes per file, bytes in all), by a request
 * budget, a per-request timeout and the caller's AbortSignal. It never leaves ComfyUI's origin and
 * never requests ComfyUI's API paths.
 */
import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { FrontendFile } from '../protocol.js';
import { encodePath, getStream, HttpError } from './http-stream.js';
import {
  detectFrontendVersion,
  effectiveLimits,
  extractNumberedSeries,
  extractReferences,
  FrontendLimitError,
  resolveReference,
  textKind,
  type FrontendLimits,
} from './frontend-refs.js';

/** Text files larger than this are hashed but not searched for references. */
export const PARSE_MAX_BYTES = 16 * 1024 * 1024;
/** Answers that mean "no such file here" rather than trouble. */
const NOT_A_FILE = new Set([400, 403, 404, 405, 410, 414]);

export interface CrawlOptions {
  /** ComfyUI base URL, e.g. `http://127.0.0.1:8188` (a base path is kept). */
  baseUrl: string;
  /** Tighter limits than the protocol's (tests). */
  limits?: Partial<FrontendLimits>;
  /** Requests at the same time. Default 6. */
  concurrency?: number;
  /** Per request, body included. Default 30 s. */
  timeoutMs?: number;
  /** Tries per request when ComfyUI does not answer or answers 5xx. Default 3. */
  attempts?: number;
  signal?: AbortSignal;
  /**
   * false: do not read `/` (the frontend comes from a folder); only the custom nodes' files and
   * what they reference are crawled. Default true.
   */
  includeIndex?: boolean;
  /** Site paths known already (read from a folder): neither requested nor listed. */
  known?: ReadonlySet<string>;
}

export interface CrawlResult {
  /** Sorted by path. */
  files: FrontendFile[];
  /** sha256 of what `/` served (recorded as `index.html`); null without `includeIndex`. */
  indexSha256: string | null;
  /** `GET /extensions` as ComfyUI answered it. */
  extensions: string[];
  /** The frontend's own version when a file carries it (see detectFrontendVersion). */
  frontendVersion: string | null;
  totalBytes: number;
  /** Requests made, including the ones answered 404. */
  requests: number;
}

interface Fetched {
  size: number;
  sha256: string;
  /** The body when it is text to search, else null. */
  text: string | null;
  kind: ReturnType<typeof textKind>;
}

/** Crawls the frontend ComfyUI serves at `baseUrl`. Rejects with FrontendLimitError when it is too big. */
export async function crawlFrontend(opts: CrawlOptions): Promise<CrawlResult> {
  return new Crawl(opts).run();
}

class Crawl {
  private readonly root: string;
  private readonly limits: FrontendLimits;
  private readonly maxRequests: number;
  private readonly timeoutMs: number;
  private readonly attempts: number;
  private readonly concurrency: number;
  /** Aborts everything in flight when one request fails for good. */
  private readonly stop = new AbortController();
  private readonly signal: AbortSignal;
  private readonly seen = new Set<string>();
  /** Files to try, and numbered series to probe (`frame_${i}.png`: 0, 1, 2… until one is missing). */
  private readonly queue: ({ path: string } | { prefix: string; suffix: string; from: string })[] = [];
  private readonly seenSeries = new Set<string>();
  private readonly found = new Map<string, FrontendFile>();
  private readonly versions = new Map<string, string>();
  private totalBytes = 0;
  private requests = 0;

  constructor(private readonly opts: CrawlOptions) {
    this.root = opts.baseUrl.replace(/\/+$/, '') + '/';
    this.limits = effectiveLimits(opts.limits);
    // Every file may yield a few candidates that turn out not to exist; a frontend that needs more
    // requests than this is not one we want to mirror.
    this.maxRequests = Math.max(2000, this.limits.maxFiles * 6);
    this.timeoutMs = opts.timeoutMs ?? 30_000;
    this.attempts = Math.max(1, opts.attempts ?? 3);
    this.concurrency = Math.max(1, opts.concurrency ?? 6);
    this.signal = opts.signal ? AbortSignal.any([opts.signal, this.stop.signal]) : this.stop.signal;
  }

  async run(): Promise<CrawlResult> {
    let indexSha256: string | null = null;
    const includeIndex = this.opts.includeIndex ?? true;
    if (includeIndex) {
      this.seen.add('index.html');
      const index = await this.fetchFile('', 'index.html');
      if (!index) throw new Error(`ComfyUI did not serve its frontend at ${this.root} (no index.html)`);
      indexSha256 = index.sha256;
      this.record('index.html', index);
      this.follow('index.html', index);
    }
    const extensions = await this.readExtensionList();
    for (const e of extensions) this.enqueue(e, 'index.html');
    await this.drain();
    const files = [...this.found.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    const firstVersionPath = [...this.versions.keys()].sort()[0];
    return {
      files,
      indexSha256,
      extensions,
      frontendVersion: firstVersionPath === undefined ? null : this.versions.get(firstVersionPath)!,
      totalBytes: this.totalBytes,
      requests: this.requests,
    };
  }

  private async readExtensionList(): Promise<string[]> {
    const res = await this.request('extensions', 'extensions');
    if (!res) return [];
    const text = (await this.readBody(res, 'extensions', 4 * 1024 * 1024, true, false)).text ?? '';
    let list: unknown;
    try {
      list = JSON.parse(text);
    } catch {
      return [];
    }
    return Array.isArray(list)
      ? list.filter((e): e is string => typeof e === 'string').slice(0, 100_000)
      : [];
  }

  private enqueue(ref: string, from: string): void {
    for (const path of resolveReference(ref, from)) {
      if (this.seen.has(path) || this.opts.known?.has(path)) continue;
      this.seen.add(path);
      this.queue.push({ path });
    }
  }

  /** At most this many files per numbered series. */
  private static readonly SERIES_MAX = 100;

  private async visitSeries(prefix: string, suffix: string, from: string): Promise<void> {
    for (let n = 0; n < Crawl.SERIES_MAX; n++) {
      let hit = false;
      for (const path of resolveReference(`${prefix}${n}${suffix}`, from)) {
        if (this.found.has(path)) hit = true;
        if (this.seen.has(path) || this.opts.known?.has(path)) {
          hit ||= this.opts.known?.has(path) === true;
          continue;
        }
        this.seen.add(path);
        if (await this.visit(path)) hit = true;
      }
      // Series may start at 0 or at 1.
      if (!hit && n >= 1) return;
    }
  }

  /**
   * Runs the queue with `concurrency` requests at a time until it is empty and nothing is in
   * flight. The first failure stops the rest (aborted), and is thrown once they have all settled.
   */
  private drain(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let active = 0;
      let failure: Error | null = null;
      const settle = () => {
        if (active > 0) return;
        if (failure) reject(failure);
        else if (this.queue.length === 0) resolve();
      };
      const pump = () => {
        while (!failure && active < this.concurrency && this.queue.length > 0) {
          const next = this.queue.shift()!;
          active++;
          const task =
            'path' in next ? this.visit(next.path) : this.visitSeries(next.prefix, next.suffix, next.from);
          task.then(
            () => {
              active--;
              pump();
            },
            (err: unknown) => {
              active--;
              if (!failure) {
                failure = err instanceof Error ? err : new Error(String(err));
                this.stop.abort();
              }
              settle();
            },
          );
        }
        settle();
      };
      pump();
    });
  }

  /** Fetches, records and follows one file; false when it does not exist. */
  private async visit(path: string): Promise<boolean> {
    const file = await this.fetchFile(encodePath(path), path);
    if (!file) return false;
    this.record(path, file);
    this.follow(path, file);
    return true;
  }

  private follow(path: string, file: Fetched): void {
    if (file.text === null || !file.kind) return;
    for (const ref of extractReferences(file.text, file.kind)) this.enqueue(ref, path);
    if (file.kind === 'css') return;
    const folder = path.includes('/') ? path.slice(0, path.lastIndexOf('/')) : '';
    for (const { prefix, suffix } of extractNumberedSeries(file.text)) {
      const key = `${folder}\0${prefix}\0${suffix}`;
      if (this.seenSeries.has(key)) continue;
      this.seenSeries.add(key);
      this.queue.push({ prefix, suffix, from: path });
    }
  }

  private record(path: string, file: Fetched): void {
    if (this.found.size >= this.limits.maxFiles) {
      throw new FrontendLimitError(`the frontend has more than ${this.limits.maxFiles} files`);
    }
    this.found.set(path, { path, size: file.size, sha256: file.sha256 });
    if (file.text !== null && file.kind === 'js') {
      const v = detectFrontendVersion(file.text);
      if (v) this.versions.set(path, v);
    }
  }

  /** GET one file: null when it does not exist. `urlPath` is already encoded. */
  private async fetchFile(urlPath: string, path: string): Promise<Fetched | null> {
    for (let attempt = 1; ; attempt++) {
      const res = await this.request(urlPath, path);
      if (!res) return null;
      const kind = textKind(path, res.headers['content-type']);
      // A server that answers every path with its index page (a proxy's fallback) serves no files.
      if (
        path !== 'index.html' &&
        kind !== 'html' &&
        /^text\/html/i.test(res.headers['content-type'] ?? '')
      ) {
        res.destroy();
        return null;
      }
      try {
        return await this.readBody(res, path, this.limits.maxFileBytes, kind !== null);
      } catch (err) {
        if (!(err instanceof HttpError) || attempt >= this.attempts || this.signal.aborted) throw err;
      }
    }
  }

  /** The response, or null for "no such file"; transient failures are retried. */
  private async request(urlPath: string, path: string): Promise<IncomingMessage | null> {
    for (let attempt = 1; ; attempt++) {
      if (++this.requests > this.maxRequests) {
        throw new FrontendLimitError(
          `the frontend crawl needed more than ${this.maxRequests} requests; is this ComfyUI's frontend?`,
        );
      }
      const timeout = AbortSignal.timeout(this.timeoutMs);
      const signal = AbortSignal.any([this.signal, timeout]);
      try {
        const res = await getStream(this.root + urlPath, {}, signal);
        // The timeout keeps running while the body is read.
        const onTimeout = () => res.destroy(new Error('timed out'));
        timeout.addEventListener('abort', onTimeout, { once: true });
        res.once('close', () => timeout.removeEventListener('abort', onTimeout));
        return res;
      } catch (err) {
        if (this.signal.aborted) throw this.signal.reason ?? err;
        const e =
          err instanceof HttpError
            ? err
            : new HttpError(0, `GET /${urlPath} ${timeout.aborted ? 'timed out' : 'failed'}`);
        if (NOT_A_FILE.has(e.status)) return null;
        if (!e.transient || attempt >= this.attempts) {
          throw new Error(`reading the frontend from ComfyUI failed at /${path}: ${e.message}`, {
            cause: err,
          });
        }
        await new Promise((r) => setTimeout(r, 200 * attempt));
      }
    }
  }

  private async readBody(
    res: IncomingMessage,
    path: string,
    maxBytes: number,
    keepText: boolean,
    /** Counts towards the frontend's size (not so for the extension list). */
    counts = true,
  ): Promise<Fetched> {
    const declared = Number(res.headers['content-length']);
    if (Number.isFinite(declared) && declared > maxBytes) {
      res.destroy();
      throw new FrontendLimitError(`${path} is larger than ${maxBytes} bytes`);
    }
    const hash = createHash('sha256');
    const chunks: Buffer[] | null = keepText ? [] : null;
    let kept = chunks;
    let size = 0;
    try {
      for await (const c of res) {
        const chunk = c as Buffer;
        size += chunk.length;
        if (size > maxBytes) {
          res.destroy();
          throw new FrontendLimitError(`${path} is larger than ${maxBytes} bytes`);
        }
        if (counts && this.totalBytes + size > this.limits.maxTotalBytes) {
          res.destroy();
          throw new FrontendLimitError(`the frontend is larger than ${this.limits.maxTotalBytes} bytes`);
        }
        hash.update(chunk);
        if (kept) {
          if (size > PARSE_MAX_BYTES) kept = null;
          else kept.push(chunk);
        }
      }
    } catch (err) {
      if (err instanceof FrontendLimitError || this.signal.aborted) throw err;
      throw new HttpError(0, `reading /${path} from ComfyUI failed: ${(err as Error).message}`);
    }
    if (counts) this.totalBytes += size;
    const kind = textKind(path, res.headers['content-type']);
    return {
      size,
      sha256: hash.digest('hex'),
      text: kept ? Buffer.concat(kept).toString('utf8') : null,
      kind,
    };
  }
}
