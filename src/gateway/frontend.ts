import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { AppError } from '../errors.js';
import { safeRelativePath } from '../files/safe-path.js';
import type { FrontendIndex } from './deps.js';
import { contentTypeOf } from './mime.js';

/**
 * The unmodified ComfyUI web frontend, served to every participant under `/<user>/` from one
 * folder (FRONTEND_DIR: a built `dist/`, or the `static/` folder of `comfyui-frontend-package`).
 * The frontend derives its API base from the page path, so `/<user>/` works without a rebuild.
 */
export class FrontendAssets implements FrontendIndex {
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

  async serveIndex(_request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
    this.index ??= readFile(join(this.root, 'index.html'), 'utf8');
    // index.html names hashed bundles: never cache it, so a new frontend build is picked up.
    return reply
      .type('text/html; charset=utf-8')
      .header('cache-control', 'no-cache')
      .send(await this.index);
  }

  /** A file of the frontend (`assets/index-abc.js`, `extensions/core/...`), or FILE_NOT_FOUND. */
  async serveAsset(reply: FastifyReply, relPath: string): Promise<FastifyReply> {
    const rel = safeRelativePath(decodeURIComponent(relPath));
    const path = join(this.root, rel);
    const s = rel ? await stat(path).catch(() => null) : null;
    if (!s?.isFile()) throw new AppError('NOT_FOUND', `No route or frontend file for /${rel}.`);
    // Vite names bundles by content hash; everything else may change between builds.
    const immutable = /^assets\/.+-[A-Za-z0-9_-]{8,}\.\w+$/.test(rel);
    return reply
      .type(contentTypeOf(rel))
      .header('content-length', s.size)
      .header('cache-control', immutable ? 'public, max-age=31536000, immutable' : 'no-cache')
      .send(createReadStream(path));
  }
}

/**
 * A few frontend files are requested from the site root whatever the page path (the favicon and
 * its progress frames, some logos): serve the frontend's public `assets/` there, without a login,
 * since they are the same for everyone and hold no user data.
 */
export function frontendRootRoutes(app: FastifyInstance, frontend: FrontendAssets | null): void {
  app.get('/assets/*', async (request, reply) => {
    if (!frontend) throw new AppError('NOT_FOUND');
    return frontend.serveAsset(reply, `assets/${(request.params as { '*': string })['*']}`);
  });
  app.get('/favicon.ico', async (_request, reply) => {
    if (!frontend) throw new AppError('NOT_FOUND');
    return frontend.serveAsset(reply, 'assets/favicon.ico');
  });
}
