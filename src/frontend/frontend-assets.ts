import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { AppError } from '../errors.js';
import { safeRelativePath } from '../files/safe-path.js';
import { contentTypeOf } from '../gateway/mime.js';
import { chooseEncoding } from '../http/accept-encoding.js';
import { sendErrorTo } from '../http/error-handler.js';
import { contentRange, decideFileResponse, unsatisfiedRange, validatorsOf } from '../http/ranges.js';
import type { EncodedCopies } from './precompress.js';

/** A file of a frontend folder, found and checked, ready to send. */
export interface FrontendFileRef {
  rel: string;
  path: string;
  size: number;
  /** Names this content (its sha256, or size and mtime): ETags are made from it. */
  tag: string;
  /** For `Last-Modified` (epoch ms). */
  modifiedMs: number;
  /** Brotli/gzip copies, when made (see precompress.ts). */
  copies?: EncodedCopies | undefined;
}

/**
 * One built ComfyUI web frontend in one folder (a release `dist/`, the `static/` folder of
 * `comfyui-frontend-package`, or one mirrored version): its `index.html` and its files, read
 * unmodified. The frontend derives its API base from the page path, so `/<user>/` works without a
 * rebuild.
 */
export class FrontendAssets {
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

  /**
   * The file at `relPath` (decoded, as the router hands it over), or null when there is none.
   * Throws INVALID_PATH for a path that tries to leave the folder.
   */
  async locate(relPath: string): Promise<FrontendFileRef | null> {
    const rel = safeRelativePath(relPath);
    if (!rel) return null;
    const path = join(this.root, rel);
    const s = await stat(path).catch(() => null);
    if (!s?.isFile()) return null;
    return {
      rel,
      path,
      size: s.size,
      tag: validatorsOf(s.size, s.mtimeMs).etag.slice(1, -1),
      modifiedMs: s.mtimeMs,
    };
  }
}

const header = (request: FastifyRequest, name: string): string | undefined => {
  const v = request.headers[name];
  return Array.isArray(v) ? v.join(', ') : v;
};

/**
 * Sends one frontend file: its brotli or gzip copy when the browser takes one (`Vary:
 * Accept-Encoding`, an ETag per coding), 304 for a matching `If-None-Match`/`If-Modified-Since`,
 * and one byte range of the uncompressed file for a `Range` (ranges of a compressed copy would
 * confuse caches and help nobody: browsers ask ranges of media, not of scripts).
 */
export function sendFrontendFile(
  request: FastifyRequest,
  reply: FastifyReply,
  file: FrontendFileRef,
): FastifyReply {
  const range = header(request, 'range');
  const available = (['br', 'gzip'] as const).filter((c) => file.copies?.[c]);
  const coding = range ? 'identity' : chooseEncoding(header(request, 'accept-encoding'), available);
  const copy = coding === 'identity' ? null : file.copies![coding]!;
  const size = copy ? copy.size : file.size;
  // Strong ETags, one per coding: each is a different sequence of bytes.
  const v = validatorsOf(file.size, file.modifiedMs);
  const etag = `"${file.tag}${coding === 'identity' ? '' : `-${coding}`}"`;
  const decision = decideFileResponse(
    {
      range,
      ifRange: header(request, 'if-range'),
      ifNoneMatch: header(request, 'if-none-match'),
      ifModifiedSince: header(request, 'if-modified-since'),
    },
    size,
    { etag, lastModified: v.lastModified },
  );
  // Vite names bundles by content hash; everything else may change between builds.
  const immutable = /^assets\/.+-[A-Za-z0-9_-]{8,}\.\w+$/.test(file.rel);
  reply
    .header('vary', 'Accept-Encoding')
    .header('etag', etag)
    .header('last-modified', v.lastModified.toUTCString())
    .header('cache-control', immutable ? 'public, max-age=31536000, immutable' : 'no-cache');
  if (available.length === 0) reply.header('accept-ranges', 'bytes');
  if (decision.status === 304) return reply.status(304).send();
  reply.type(file.rel === 'index.html' ? 'text/html; charset=utf-8' : contentTypeOf(file.rel));
  if (decision.status === 416) {
    reply.header('content-range', unsatisfiedRange(size));
    return sendErrorTo(
      request,
      reply,
      new AppError('RANGE_NOT_SATISFIABLE', `The file has ${size} bytes; the range is outside them.`),
    );
  }
  if (copy) reply.header('content-encoding', coding);
  if (decision.status === 206) {
    const r = decision.range;
    return reply
      .status(206)
      .header('content-range', contentRange(r, size))
      .header('content-length', r.end - r.start + 1)
      .send(createReadStream(file.path, { start: r.start, end: r.end }));
  }
  return reply.header('content-length', size).send(createReadStream(copy ? copy.path : file.path));
}
