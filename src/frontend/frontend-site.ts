/**
 * What participants' browsers load at `/<user>/`: the ComfyUI web frontend from FRONTEND_DIR, or
 * the version mirrored from a worker (FrontendCache), or, before either exists, a page that says
 * what is going on and reloads itself.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { AppError } from '../errors.js';
import { safeRelativePath } from '../files/safe-path.js';
import { FrontendAssets, sendFrontendFile } from './frontend-assets.js';
import type { FrontendFile } from '../worker/protocol.js';
import type { FrontendCache, FrontendVersion } from './frontend-cache.js';
import { isCompressible, type Precompressor } from './precompress.js';

/** For /api/v1/status and the dashboard. */
export interface FrontendStatus {
  /** `dir`: FRONTEND_DIR; `mirror`: copied from a worker; `none`: nothing to serve yet. */
  source: 'dir' | 'mirror' | 'none';
  /** Whether workers are asked for their frontend. */
  mirroring: boolean;
  /** The mirrored version served now. */
  version: (Omit<FrontendVersion, 'files'> & { files: number }) | null;
  /** Mirrored versions kept on disk. */
  cachedVersions: number;
}

export interface FrontendSite {
  serveIndex(request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply>;
  /** A file of the frontend by its URL path below `/<user>/` (or the site root); NOT_FOUND if none. */
  serveAsset(request: FastifyRequest, reply: FastifyReply, relPath: string): Promise<FastifyReply>;
  /** True when workers should offer their frontend (see `welcome.mirrorFrontend`). */
  wantsMirror(): boolean;
  status(): FrontendStatus;
  /** Stops background work (compression) at shutdown. */
  close(): Promise<void>;
}

/**
 * FRONTEND_DIR: one folder, fixed for the life of the process. Its text files are compressed once
 * in the background (see {@link precompressFolder}); a file whose size or modification time
 * changed since is served as it is.
 */
export class FolderFrontend implements FrontendSite {
  /** Compressible files by path, with what they were when hashed. */
  private readonly hashed = new Map<string, { sha256: string; size: number; mtimeMs: number }>();

  constructor(
    private readonly assets: FrontendAssets,
    private readonly precompressor: Precompressor | null = null,
  ) {}

  /** Hashes the folder's compressible files and queues those without copies. */
  async precompressFolder(): Promise<void> {
    if (!this.precompressor) return;
    const jobs = [];
    for (const file of await listFiles(this.assets.root)) {
      if (!isCompressible(file.rel, file.size)) continue;
      const sha256 = await sha256Of(file.path);
      this.hashed.set(file.rel, { sha256, size: file.size, mtimeMs: file.mtimeMs });
      jobs.push({ sha256, path: file.path, rel: file.rel });
    }
    this.precompressor.add(jobs);
  }

  close(): Promise<void> {
    return this.precompressor?.close() ?? Promise.resolve();
  }

  serveIndex(request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
    return this.serveAsset(request, reply, 'index.html');
  }

  async serveAsset(request: FastifyRequest, reply: FastifyReply, relPath: string): Promise<FastifyReply> {
    const file = await this.assets.locate(relPath);
    if (!file) throw notFound(relPath);
    const h = this.hashed.get(file.rel);
    const same = h && h.size === file.size && h.mtimeMs === file.modifiedMs;
    const copies = same ? this.precompressor?.copiesOf(h.sha256) : undefined;
    return sendFrontendFile(request, reply, { ...file, copies });
  }

  wantsMirror(): boolean {
    return false;
  }

  status(): FrontendStatus {
    return { source: 'dir', mirroring: false, version: null, cachedVersions: 0 };
  }
}

/**
 * Frontends mirrored from workers. `index.html` comes from the current version; a file missing
 * there is looked up in the other kept versions, so a browser that loaded an older version before
 * the current one arrived still gets its lazily loaded chunks (Vite names them by content hash).
 * `cache` is null when FRONTEND_MIRROR=false: then only the explanation page is served.
 */
export class MirroredFrontend implements FrontendSite {
  /** Per version: its folder, and its files by path (from the manifest: no disk access). */
  private readonly opened = new Map<string, Opened>();

  constructor(private readonly cache: FrontendCache | null) {}

  close(): Promise<void> {
    return this.cache?.close() ?? Promise.resolve();
  }

  async serveIndex(request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
    const cur = this.cache?.current();
    if (!cur) return sendWaitingPage(reply, this.cache !== null);
    return this.send(request, reply, cur, 'index.html') ?? Promise.reject(notFound('index.html'));
  }

  async serveAsset(request: FastifyRequest, reply: FastifyReply, relPath: string): Promise<FastifyReply> {
    const rel = safeRelativePath(relPath);
    for (const v of this.cache?.list() ?? []) {
      const sent = this.send(request, reply, v, rel);
      if (sent) return sent;
    }
    throw notFound(relPath);
  }

  /** Sends `rel` of version `v` (null when `v` has no such file). */
  private send(
    request: FastifyRequest,
    reply: FastifyReply,
    v: FrontendVersion,
    rel: string,
  ): FastifyReply | null {
    const { root, files } = this.open(v);
    const f = files.get(rel);
    if (!f) return null;
    return sendFrontendFile(request, reply, {
      rel,
      path: join(root, rel),
      size: f.size,
      tag: f.sha256.slice(0, 32),
      modifiedMs: v.createdAt,
      copies: this.cache?.encodedCopiesOf(f.sha256),
    });
  }

  wantsMirror(): boolean {
    return this.cache !== null;
  }

  status(): FrontendStatus {
    const cur = this.cache?.current() ?? null;
    return {
      source: cur ? 'mirror' : 'none',
      mirroring: this.cache !== null,
      version: cur ? { ...cur, files: cur.files.length } : null,
      cachedVersions: this.cache?.list().length ?? 0,
    };
  }

  private open(v: FrontendVersion): Opened {
    let o = this.opened.get(v.id);
    if (!o) {
      // Versions are few (FRONTEND_KEEP_VERSIONS); forget folders that were deleted.
      const live = new Set(this.cache?.list().map((x) => x.id));
      for (const k of this.opened.keys()) if (!live.has(k)) this.opened.delete(k);
      o = { root: this.cache!.dirOf(v.id), files: new Map(v.files.map((f) => [f.path, f])) };
      this.opened.set(v.id, o);
    }
    return o;
  }
}

interface Listed {
  rel: string;
  path: string;
  size: number;
  mtimeMs: number;
}

/** Every file below `root` (symbolic links are followed, as when serving). */
async function listFiles(root: string, rel = ''): Promise<Listed[]> {
  const out: Listed[] = [];
  for (const name of await readdir(join(root, rel))) {
    const r = rel ? `${rel}/${name}` : name;
    const s = await stat(join(root, r)).catch(() => null);
    if (s?.isDirectory()) out.push(...(await listFiles(root, r)));
    else if (s?.isFile()) out.push({ rel: r, path: join(root, r), size: s.size, mtimeMs: s.mtimeMs });
  }
  return out;
}

async function sha256Of(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

interface Opened {
  root: string;
  files: Map<string, FrontendFile>;
}

function notFound(relPath: string): AppError {
  return new AppError('NOT_FOUND', `No route or frontend file for /${relPath.slice(0, 200)}.`);
}

/**
 * Shown at `/<user>/` until a frontend exists. It reloads itself, so participants who open their
 * link before the first GPU worker connects get ComfyUI as soon as it has been mirrored.
 */
function sendWaitingPage(reply: FastifyReply, mirroring: boolean): FastifyReply {
  const text = mirroring
    ? 'ComfyUI will open here as soon as the first GPU worker has connected (its web interface is copied from there). This page reloads by itself. Your files are safe.'
    : 'The ComfyUI web interface is not configured on this server yet. Your files are safe; please tell the instructor.';
  return reply
    .status(503)
    .type('text/html; charset=utf-8')
    .header('cache-control', 'no-store')
    .header('retry-after', '15')
    .send(
      `<!doctype html><html lang="en"><meta charset="utf-8"><meta name="viewport" content="width=device-width">${
        mirroring ? '<meta http-equiv="refresh" content="15">' : ''
      }<title>ComfyUI is not available yet</title><body style="font:18px/1.5 system-ui,sans-serif;max-width:40em;margin:4em auto;padding:0 1em"><h1>ComfyUI is not available yet</h1><p>${text}</p></body></html>`,
    );
}
