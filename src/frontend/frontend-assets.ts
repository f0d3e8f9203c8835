import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { FastifyReply } from 'fastify';
import { safeRelativePath } from '../files/safe-path.js';
import { contentTypeOf } from '../gateway/mime.js';

/** A file of a frontend folder, found and checked, ready to send. */
export interface FrontendFileRef {
  rel: string;
  path: string;
  size: number;
}

/**
 * One built ComfyUI web frontend in one folder (a release `dist/`, the `static/` folder of
 * `comfyui-frontend-package`, or one mirrored version): its `index.html` and its files, read
 * unmodified. The frontend derives its API base from the page path, so `/<user>/` works without a
 * rebuild.
 */
export class FrontendAssets {
  private index: Promise<string> | null = null;

  constructor(readonly root: string) {}

  /** Throws a clear error at start-up when the folder is not a built frontend. */
  static async open(root: string): Promise<FrontendAssets> {
    const s = await stat(join(root, 'index.html')).catch(() => null);
    if (!s?.isFile()) {
      throw new Error(
        `FRONTEND_DIR=${root} has no index.html; point it at a built ComfyUI frontend (dist/ or static/)`,
      );
    }
    return new FrontendAssets(root);
  }

  /** `index.html`, read once: the folder of one version never changes under a running server. */
  indexHtml(): Promise<string> {
    this.index ??= readFile(join(this.root, 'index.html'), 'utf8');
    return this.index;
  }

  /**
   * The file at `relPath` (decoded, as the router hands it over), or null when there is none.
   * Throws INVALID_PATH for a path that tries to leave the folder.
   */
  async locate(relPath: string): Promise<FrontendFileRef | null> {
    const rel = safeRelativePath(relPath);
    if (!rel) return null;
    const path = join(this.root, rel);
    const s = await stat(path).catch(() => null);
    return s?.isFile() ? { rel, path, size: s.size } : null;
  }
}

/** Sends `index.html`, never cached: it names the hashed bundles, so a new build is picked up. */
export function sendIndex(reply: FastifyReply, html: string): FastifyReply {
  return reply.type('text/html; charset=utf-8').header('cache-control', 'no-cache').send(html);
}

/** Streams one frontend file with its content type and caching. */
export function sendFrontendFile(reply: FastifyReply, file: FrontendFileRef): FastifyReply {
  // Vite names bundles by content hash; everything else may change between builds.
  const immutable = /^assets\/.+-[A-Za-z0-9_-]{8,}\.\w+$/.test(file.rel);
  return reply
    .type(contentTypeOf(file.rel))
    .header('content-length', file.size)
    .header('cache-control', immutable ? 'public, max-age=31536000, immutable' : 'no-cache')
    .send(createReadStream(file.path));
}
