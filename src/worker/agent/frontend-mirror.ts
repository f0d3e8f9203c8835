/**
 * Mirrors the ComfyUI web frontend to the control plane when it asks (`welcome.mirrorFrontend`):
 *
 * 1. read the frontend: over HTTP from ComfyUI (./frontend-crawl.ts), or from `--frontend-dir`
 *    (./frontend-dir.ts) plus the custom nodes' files, which only ComfyUI serves;
 * 2. `POST /worker/v1/frontend/offers` with every file's path, size and sha256;
 * 3. `PUT /worker/v1/frontend/blobs/<sha256>` for each content the control plane lacks, streamed
 *    (re-read from ComfyUI or from the folder, never held in memory);
 * 4. `POST /worker/v1/frontend/offers/<versionId>/complete`.
 *
 * {@link FrontendMirror} runs this in the background, one at a time, never in the way of jobs:
 * when the control plane wants it and ComfyUI is healthy. Transient HTTP failures are retried with
 * backoff; a 409 to the offer means the control plane does not want a mirror (it stops quietly).
 * After a success it keeps the offer: when asked again and ComfyUI's `index.html` and extension
 * list are unchanged, it re-sends that offer without reading the frontend again.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { frontendOfferAnswer, type FrontendFile, type FrontendOffer } from '../protocol.js';
import { backoffDelay, type BackoffOptions } from './backoff.js';
import { endpoint, type ControlPlaneHttp } from './files.js';
import { crawlFrontend } from './frontend-crawl.js';
import { hashFile, readFrontendDir } from './frontend-dir.js';
import { effectiveLimits } from './frontend-refs.js';
import { encodePath, getStream, HttpError, putStream, requestJson } from './http-stream.js';

/** Contents uploaded at the same time. */
const UPLOAD_CONCURRENCY = 4;
/** Per ComfyUI request (for a re-read, until its headers arrive). */
const REQUEST_TIMEOUT_MS = 30_000;

/** Where one content can be read again for its upload. */
type BlobSource = { kind: 'http'; path: string } | { kind: 'dir'; file: string };

/** A frontend as read: what to offer and where each content comes from. */
export interface FrontendSnapshot {
  source: 'http' | 'dir';
  files: FrontendFile[];
  blobs: Map<string, BlobSource & { size: number }>;
  frontendVersion: string | null;
  totalBytes: number;
  /** Changes when ComfyUI's index.html or its extension list does (see {@link frontendFingerprint}). */
  fingerprint: string;
}

export interface MirrorContext {
  cp: ControlPlaneHttp;
  /** ComfyUI base URL. */
  comfyuiUrl: string;
  comfyuiVersion: string;
  /** Read the frontend from this folder instead of over HTTP (custom nodes' files still come from ComfyUI). */
  frontendDir?: string | undefined;
  logger: Logger;
  signal?: AbortSignal | undefined;
  /** Tries per control-plane request on transient failures (no answer, 408, 429, 5xx). Default 5. */
  attempts?: number | undefined;
  /** Backoff between those tries. Default 500 ms doubling to 10 s. */
  retryBackoff?: BackoffOptions | undefined;
  /** Where the control plane takes the offer: `/frontend` (default) or `/templates` (the template library). */
  route?: '/frontend' | '/templates' | undefined;
}

export type MirrorResult =
  | {
      status: 'present' | 'sent';
      versionId: string;
      files: number;
      blobsSent: number;
      bytesSent: number;
      frontendVersion: string | null;
    }
  | { status: 'not_wanted' };

/** A file changed (or vanished) between reading the frontend and uploading it: read it again. */
export class FrontendChangedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FrontendChangedError';
  }
}

function comfyRoot(ctx: MirrorContext): string {
  return ctx.comfyuiUrl.replace(/\/+$/, '') + '/';
}

function fingerprintOf(indexSha256: string, extensions: string[]): string {
  return createHash('sha256')
    .update(`${indexSha256}\n${[...extensions].sort().join('\n')}`)
    .digest('hex');
}

/**
 * A cheap check whether the frontend changed: sha256 of `index.html` (from `/`, or from the
 * folder) and of ComfyUI's extension list. A rebuilt frontend has a new index.html (its entry file
 * names carry content hashes); added or removed custom nodes change the list.
 */
export async function frontendFingerprint(ctx: MirrorContext): Promise<string> {
  const signal = ctx.signal;
  const root = comfyRoot(ctx);
  let indexSha: string;
  if (ctx.frontendDir) {
    indexSha = (await hashFile(`${ctx.frontendDir}/index.html`, signal)).sha256;
  } else {
    const res = await getStream(root, {}, withTimeout(signal));
    const hash = createHash('sha256');
    for await (const c of res) hash.update(c as Buffer);
    indexSha = hash.digest('hex');
  }
  return fingerprintOf(indexSha, await readExtensionList(ctx));
}

async function readExtensionList(ctx: MirrorContext): Promise<string[]> {
  try {
    const res = await getStream(`${comfyRoot(ctx)}extensions`, {}, withTimeout(ctx.signal));
    const chunks: Buffer[] = [];
    for await (const c of res) chunks.push(c as Buffer);
    const list = JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
    return Array.isArray(list) ? list.filter((e): e is string => typeof e === 'string') : [];
  } catch (err) {
    if (err instanceof HttpError && err.status === 404) return [];
    throw err;
  }
}

function withTimeout(signal: AbortSignal | undefined, ms = REQUEST_TIMEOUT_MS): AbortSignal {
  const t = AbortSignal.timeout(ms);
  return signal ? AbortSignal.any([signal, t]) : t;
}

/**
 * GET whose timeout covers only the wait for the answer's headers: the body then streams to the
 * control plane for as long as that takes.
 */
async function getHeadersWithin(url: string, signal: AbortSignal | undefined, ms: number) {
  const ac = new AbortController();
  const onAbort = () => ac.abort(signal!.reason);
  signal?.addEventListener('abort', onAbort, { once: true });
  const timer = setTimeout(() => ac.abort(new Error('timed out')), ms);
  try {
    const res = await getStream(url, {}, ac.signal);
    res.once('close', () => signal?.removeEventListener('abort', onAbort));
    return res;
  } catch (err) {
    signal?.removeEventListener('abort', onAbort);
    if (!signal?.aborted && ac.signal.aborted) {
      throw new HttpError(0, `GET ${new URL(url).pathname} timed out after ${ms} ms`);
    }
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

/** Reads the frontend (over HTTP, or from the folder plus the custom nodes' files over HTTP). */
export async function readFrontend(ctx: MirrorContext): Promise<FrontendSnapshot> {
  const common = {
    baseUrl: ctx.comfyuiUrl,
    ...(ctx.signal ? { signal: ctx.signal } : {}),
  };
  const blobs: FrontendSnapshot['blobs'] = new Map();
  if (!ctx.frontendDir) {
    const crawl = await crawlFrontend(common);
    for (const f of crawl.files) blobs.set(f.sha256, { kind: 'http', path: f.path, size: f.size });
    return {
      source: 'http',
      files: crawl.files,
      blobs,
      frontendVersion: crawl.frontendVersion,
      totalBytes: crawl.totalBytes,
      fingerprint: fingerprintOf(crawl.indexSha256!, crawl.extensions),
    };
  }
  const dir = await readFrontendDir(ctx.frontendDir, ctx.signal ? { signal: ctx.signal } : {});
  if (dir.skipped.length > 0) {
    ctx.logger.debug(
      { skipped: dir.skipped.slice(0, 20), count: dir.skipped.length },
      'left some files of the frontend folder out',
    );
  }
  for (const f of dir.files) blobs.set(f.sha256, { kind: 'dir', file: f.file, size: f.size });
  // Custom nodes' web files live in their own folders, which only ComfyUI knows and serves.
  const known = new Set(dir.files.map((f) => f.path));
  const limits = effectiveLimits();
  const ext = await crawlFrontend({
    ...common,
    includeIndex: false,
    known,
    limits: {
      maxFileBytes: limits.maxFileBytes,
      maxFiles: Math.max(0, limits.maxFiles - dir.files.length),
      maxTotalBytes: Math.max(0, limits.maxTotalBytes - dir.totalBytes),
    },
  });
  for (const f of ext.files) {
    if (!blobs.has(f.sha256)) blobs.set(f.sha256, { kind: 'http', path: f.path, size: f.size });
  }
  const files = [...dir.files.map(({ path, size, sha256 }) => ({ path, size, sha256 })), ...ext.files].sort(
    (a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0),
  );
  return {
    source: 'dir',
    files,
    blobs,
    frontendVersion: dir.frontendVersion ?? ext.frontendVersion,
    totalBytes: dir.totalBytes + ext.totalBytes,
    fingerprint: fingerprintOf(dir.indexSha256, ext.extensions),
  };
}

async function retrying<T>(ctx: MirrorContext, what: string, fn: () => Promise<T>): Promise<T> {
  const attempts = Math.max(1, ctx.attempts ?? 5);
  const backoff = ctx.retryBackoff ?? { baseMs: 500, maxMs: 10_000 };
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      const retry =
        err instanceof HttpError && err.transient && attempt + 1 < attempts && !ctx.signal?.aborted;
      if (!retry) throw err;
      const delay = backoffDelay(attempt, backoff);
      ctx.logger.debug(
        { what, err: err.message, retryInMs: delay },
        'frontend mirror request failed; retrying',
      );
      await sleep(delay, undefined, { signal: ctx.signal });
    }
  }
}

/** `missing` from a 409 answer to complete: `{missing}` or `{error: {details: {missing}}}`. */
function missingFrom(body: string | undefined): string[] | null {
  if (!body) return null;
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    return null;
  }
  const obj = json as { missing?: unknown; error?: { details?: { missing?: unknown } } } | null;
  const list = obj?.missing ?? obj?.error?.details?.missing;
  if (!Array.isArray(list)) return null;
  return list.filter((s): s is string => typeof s === 'string' && /^[0-9a-f]{64}$/.test(s));
}

/** Offers a snapshot, uploads what is missing and completes it. */
export async function offerFrontend(ctx: MirrorContext, snap: FrontendSnapshot): Promise<MirrorResult> {
  const headers = { authorization: `Bearer ${ctx.cp.token}` };
  const offer: FrontendOffer = {
    source: snap.source,
    comfyuiVersion: ctx.comfyuiVersion.slice(0, 64),
    frontendVersion: snap.frontendVersion,
    files: snap.files,
  };
  let blobsSent = 0;
  let bytesSent = 0;
  /** Uploads `shas`, a few at a time; on the first failure the others are stopped, then it throws. */
  const sendAll = async (shas: string[]) => {
    const unique = [...new Set(shas)];
    const stop = new AbortController();
    const signal = ctx.signal ? AbortSignal.any([ctx.signal, stop.signal]) : stop.signal;
    const sub: MirrorContext = { ...ctx, signal };
    let next = 0;
    let failure: { err: unknown } | null = null;
    const worker = async () => {
      while (next < unique.length && !failure) {
        const sha = unique[next++]!;
        try {
          const size = await retrying(sub, `PUT blob ${sha.slice(0, 12)}`, () => putBlob(sub, snap, sha));
          blobsSent++;
          bytesSent += size;
        } catch (err) {
          failure ??= { err };
          stop.abort();
        }
      }
    };
    const n = Math.max(1, Math.min(UPLOAD_CONCURRENCY, unique.length));
    await Promise.all(Array.from({ length: n }, worker));
    if (failure) throw (failure as { err: unknown }).err;
  };

  // A PUT the control plane refuses with 404/409 means the offer lapsed there: offer once more.
  for (let round = 0; ; round++) {
    let answer;
    try {
      const res = await retrying(ctx, 'offer', () =>
        requestJson('POST', endpoint(ctx.cp, `${ctx.route ?? '/frontend'}/offers`), headers, offer, {
          signal: ctx.signal,
        }),
      );
      answer = frontendOfferAnswer.parse(res.json);
    } catch (err) {
      if (err instanceof HttpError && err.status === 409) return { status: 'not_wanted' };
      throw err;
    }
    const done = (status: 'present' | 'sent') => ({
      status,
      versionId: answer.versionId,
      files: snap.files.length,
      blobsSent,
      bytesSent,
      frontendVersion: snap.frontendVersion,
    });
    if (answer.status === 'present') return done('present');
    try {
      await sendAll(answer.missing);
    } catch (err) {
      if (round === 0 && err instanceof HttpError && (err.status === 404 || err.status === 409)) continue;
      throw err;
    }
    const completeUrl = endpoint(
      ctx.cp,
      `${ctx.route ?? '/frontend'}/offers/${encodeURIComponent(answer.versionId)}/complete`,
    );
    const complete = () =>
      retrying(ctx, 'complete', () => requestJson('POST', completeUrl, headers, {}, { signal: ctx.signal }));
    try {
      await complete();
      return done('sent');
    } catch (err) {
      // The offer lapsed on the control plane: offer again.
      if (round === 0 && err instanceof HttpError && err.status === 404) continue;
      if (!(err instanceof HttpError) || err.status !== 409) throw err;
      // Some content did not arrive: send it once more.
      const missing = missingFrom(err.body);
      if (missing === null || missing.length === 0) {
        if (round === 0) continue;
        throw err;
      }
      await sendAll(missing);
      await complete();
      return done('sent');
    }
  }
}

/** Streams one content to the control plane; resolves with the bytes sent. */
async function putBlob(ctx: MirrorContext, snap: FrontendSnapshot, sha: string): Promise<number> {
  const src = snap.blobs.get(sha);
  if (!src) throw new Error(`the control plane asked for content ${sha} that this frontend does not have`);
  let body: Readable;
  let size: number | null = src.size;
  if (src.kind === 'dir') {
    body = createReadStream(src.file, ctx.signal ? { signal: ctx.signal } : {});
  } else {
    let res;
    try {
      res = await getHeadersWithin(comfyRoot(ctx) + encodePath(src.path), ctx.signal, REQUEST_TIMEOUT_MS);
    } catch (err) {
      if (err instanceof HttpError && !err.transient) {
        throw new FrontendChangedError(
          `/${src.path} changed in ComfyUI (HTTP ${err.status}) while mirroring`,
        );
      }
      throw err;
    }
    body = res;
    const declared = Number(res.headers['content-length']);
    if (Number.isFinite(declared) && declared !== src.size) {
      res.destroy();
      throw new FrontendChangedError(`/${src.path} changed in ComfyUI while mirroring`);
    }
    if (!Number.isFinite(declared)) size = null;
  }
  const headers: Record<string, string> = { authorization: `Bearer ${ctx.cp.token}` };
  if (size !== null) headers['content-length'] = String(size);
  try {
    const res = await putStream(
      endpoint(ctx.cp, `${ctx.route ?? '/frontend'}/blobs/${sha}`),
      headers,
      body,
      ctx.signal,
    );
    return res.size;
  } catch (err) {
    if (err instanceof HttpError && err.status === 400) {
      const where = src.kind === 'dir' ? src.file : `/${src.path}`;
      throw new FrontendChangedError(`${where} no longer matches its sha256 (it changed while mirroring)`);
    }
    throw err;
  } finally {
    body.destroy();
  }
}

export type FrontendState = 'idle' | 'mirroring' | 'done' | 'failed' | 'not_wanted' | 'disabled' | 'absent';

export interface FrontendStatus {
  /**
   * `idle`: not asked (or waiting for ComfyUI); `mirroring`; `done`: the control plane has this
   * frontend; `failed`: the last try failed (`lastError`), another follows with backoff;
   * `not_wanted`: the control plane refused the offer; `disabled`: `mirrorFrontend: false`;
   * `absent`: ComfyUI serves nothing to mirror (the template library when its package is missing).
   */
  state: FrontendState;
  versionId: string | null;
  frontendVersion: string | null;
  files: number | null;
  lastError: string | null;
}

export interface FrontendMirrorOptions extends Omit<
  MirrorContext,
  'comfyuiVersion' | 'signal' | 'logger' | 'comfyuiUrl'
> {
  comfyuiUrl: string;
  logger: Logger;
  /** ComfyUI's version as last seen (for the offer). */
  comfyuiVersion: () => string;
  /** Between failed tries. Default 10 s doubling to 10 min. */
  failureBackoff?: BackoffOptions;
  /**
   * What is mirrored, when not the frontend (the template library, ./template-library.ts): how
   * to read it (null: ComfyUI has none), its cheap fingerprint, where to offer it, and its name
   * in log lines.
   */
  source?: MirrorSource;
}

export interface MirrorSource {
  read(ctx: MirrorContext): Promise<FrontendSnapshot | null>;
  fingerprint(ctx: MirrorContext): Promise<string | null>;
  route: '/frontend' | '/templates';
  what: string;
}

const FRONTEND_SOURCE: MirrorSource = {
  read: readFrontend,
  fingerprint: frontendFingerprint,
  route: '/frontend',
  what: 'the ComfyUI frontend',
};

/**
 * The background task: {@link setWanted} from each `welcome`, {@link setComfyHealthy} from the
 * health monitor. It mirrors when both are true, one run at a time.
 */
export class FrontendMirror {
  private wanted = false;
  private healthy = false;
  private stopped = false;
  private running: Promise<void> | null = null;
  private abort: AbortController | null = null;
  private retryTimer: NodeJS.Timeout | undefined;
  private failures = 0;
  /** Asked again while a run was going: check once more when it ends. */
  private again = false;
  /** The last offer the control plane accepted, to re-send while the frontend is unchanged. */
  private last: { snapshot: FrontendSnapshot; versionId: string } | null = null;
  private readonly st: FrontendStatus = {
    state: 'idle',
    versionId: null,
    frontendVersion: null,
    files: null,
    lastError: null,
  };

  constructor(private readonly opts: FrontendMirrorOptions) {}

  status(): FrontendStatus {
    return { ...this.st };
  }

  /** What the last `welcome` said. Each true (each new connection) checks again, cheaply. */
  setWanted(wanted: boolean): void {
    this.wanted = wanted;
    if (wanted) {
      if (this.st.state === 'not_wanted') this.st.state = 'idle';
      this.kick();
    } else {
      this.cancel();
      // Not asked any more: an earlier failure is no longer pending.
      if (this.st.state === 'failed') this.st.state = 'idle';
    }
  }

  setComfyHealthy(healthy: boolean): void {
    if (healthy === this.healthy) return;
    this.healthy = healthy;
    if (healthy) this.kick();
    else this.cancel();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.cancel();
    await this.running;
  }

  /** Resolves when no run is going (tests). */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  private cancel(): void {
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.again = false;
    this.abort?.abort();
  }

  private kick(): void {
    if (this.stopped || !this.wanted || !this.healthy) return;
    if (this.running) {
      this.again = true;
      return;
    }
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    const abort = new AbortController();
    this.abort = abort;
    this.running = this.run(abort.signal).finally(() => {
      this.running = null;
      this.abort = null;
      if (this.again) {
        this.again = false;
        this.kick();
      }
    });
  }

  private async run(signal: AbortSignal): Promise<void> {
    const o = this.opts;
    const source = o.source ?? FRONTEND_SOURCE;
    const ctx: MirrorContext = { ...o, comfyuiVersion: o.comfyuiVersion(), signal, route: source.route };
    const started = performance.now();
    const previous = this.st.state;
    this.st.state = 'mirroring';
    try {
      let snapshot: FrontendSnapshot | null = null;
      if (this.last && (await source.fingerprint(ctx)) === this.last.snapshot.fingerprint) {
        snapshot = this.last.snapshot;
      }
      const reread = snapshot === null;
      snapshot ??= await source.read(ctx);
      if (snapshot === null) {
        // Nothing to mirror (no template package installed): not a failure, nothing to retry.
        Object.assign(this.st, {
          state: 'absent',
          versionId: null,
          frontendVersion: null,
          files: null,
          lastError: null,
        });
        this.failures = 0;
        o.logger.debug(`ComfyUI serves no copy of ${source.what}; nothing to mirror`);
        return;
      }
      const result = await offerFrontend(ctx, snapshot);
      if (result.status === 'not_wanted') {
        this.st.state = 'not_wanted';
        this.st.lastError = null;
        this.wanted = false;
        o.logger.info(`the control plane does not want a copy of ${source.what}`);
        return;
      }
      this.last = { snapshot, versionId: result.versionId };
      this.failures = 0;
      Object.assign(this.st, {
        state: 'done',
        versionId: result.versionId,
        frontendVersion: result.frontendVersion,
        files: result.files,
        lastError: null,
      });
      const fields = {
        versionId: result.versionId,
        source: snapshot.source,
        frontendVersion: result.frontendVersion,
        files: result.files,
        bytes: snapshot.totalBytes,
        blobsSent: result.blobsSent,
        bytesSent: result.bytesSent,
        ms: Math.round(performance.now() - started),
      };
      if (reread || result.blobsSent > 0)
        o.logger.info(fields, `mirrored ${source.what} to the control plane`);
      else o.logger.debug(fields, `the control plane still has this copy of ${source.what}`);
    } catch (err) {
      if (signal.aborted) {
        // Stopped, no longer wanted, or ComfyUI went away: not a failure of the mirror.
        this.st.state = previous === 'done' ? 'done' : 'idle';
        return;
      }
      const message = (err as Error).message ?? String(err);
      if (err instanceof FrontendChangedError) this.last = null;
      this.failures++;
      this.st.state = 'failed';
      this.st.lastError = message;
      const backoff = o.failureBackoff ?? { baseMs: 10_000, maxMs: 600_000 };
      // A frontend that changed under us is read again soon; other failures back off.
      const delay =
        err instanceof FrontendChangedError ? backoff.baseMs : backoffDelay(this.failures - 1, backoff);
      o.logger.warn({ err: message, retryInMs: delay }, `mirroring ${source.what} failed`);
      if (!this.stopped) {
        this.retryTimer = setTimeout(() => this.kick(), delay);
        this.retryTimer.unref();
      }
    }
  }
}
