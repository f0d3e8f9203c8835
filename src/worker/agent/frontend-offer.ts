/**
 * Sending a frontend snapshot (frontend-snapshot.ts) to the control plane:
 * `POST <route>/offers` with every file's path, size and sha256, `PUT <route>/blobs/<sha256>` for
 * each content the control plane lacks, streamed (re-read from ComfyUI or from the folder, never
 * held in memory), then `POST <route>/offers/<versionId>/complete`. Transient HTTP failures are
 * retried with backoff; a 409 to the offer means the control plane does not want a mirror.
 */
import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { frontendOfferAnswer, type FrontendOffer } from '../protocol.js';
import { backoffDelay } from './backoff.js';
import { endpoint } from './files.js';
import {
  comfyRoot,
  REQUEST_TIMEOUT_MS,
  type FrontendSnapshot,
  type MirrorContext,
} from './frontend-snapshot.js';
import { encodePath, getStream, HttpError, putStream, requestJson } from './http-stream.js';

/** Contents uploaded at the same time. */
const UPLOAD_CONCURRENCY = 4;

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
