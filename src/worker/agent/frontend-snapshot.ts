/**
 * Reading the ComfyUI web frontend for the mirror (frontend-mirror.ts): a snapshot of every file
 * with its size and sha256 and where its content can be read again, over HTTP from ComfyUI
 * (./frontend-crawl.ts) or from `--frontend-dir` (./frontend-dir.ts) plus the custom nodes' files,
 * which only ComfyUI serves; and a cheap fingerprint that tells whether the frontend changed.
 */
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import type { FrontendFile } from '../protocol.js';
import type { BackoffOptions } from './backoff.js';
import type { ControlPlaneHttp } from './files.js';
import { crawlFrontend } from './frontend-crawl.js';
import { hashFile, readFrontendDir } from './frontend-dir.js';
import { effectiveLimits } from './frontend-refs.js';
import { getStream, HttpError } from './http-stream.js';

/** Per ComfyUI request (for a re-read, until its headers arrive). */
export const REQUEST_TIMEOUT_MS = 30_000;

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

export function comfyRoot(ctx: MirrorContext): string {
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
