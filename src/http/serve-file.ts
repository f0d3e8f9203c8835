import { Readable } from 'node:stream';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { AppError } from '../errors.js';
import type { FileStat, FileStore } from '../files/file-store.js';
import { sendErrorTo } from './error-handler.js';
import { contentRange, decideFileResponse, unsatisfiedRange, validatorsOf } from './ranges.js';

export interface ServedFile {
  /** File-store key, already checked to be inside the caller's own space. */
  key: string;
  stat: FileStat;
  contentType: string;
  contentDisposition: string;
  /** The file's bytes in hand (an output still being stored): served from here, not the store. */
  bytes?: Buffer;
}

const header = (request: FastifyRequest, name: string): string | undefined => {
  const v = request.headers[name];
  return Array.isArray(v) ? v.join(', ') : v;
};

/**
 * Answers a GET or HEAD for one stored file: 200, 206 (one byte range, read from the store as a
 * range, so object storage sends only those bytes), 304 or 416, with `Accept-Ranges`, `ETag` and
 * `Last-Modified` on every answer (decisions in ranges.ts). HEAD never opens the file.
 */
export async function sendStoredFile(
  request: FastifyRequest,
  reply: FastifyReply,
  files: FileStore,
  file: ServedFile,
): Promise<FastifyReply> {
  const { size, mtimeMs } = file.stat;
  const v = validatorsOf(size, mtimeMs);
  const decision = decideFileResponse(
    {
      range: header(request, 'range'),
      ifRange: header(request, 'if-range'),
      ifNoneMatch: header(request, 'if-none-match'),
      ifModifiedSince: header(request, 'if-modified-since'),
    },
    size,
    v,
  );
  const range = decision.status === 206 ? decision.range : null;
  // Opened before any header is set: a file gone since its stat is a plain 404, without our headers.
  // HEAD never opens it (Fastify drains a HEAD payload and keeps our Content-Length).
  const body =
    decision.status !== 200 && decision.status !== 206
      ? null
      : request.method === 'HEAD'
        ? Readable.from([])
        : file.bytes
          ? range
            ? file.bytes.subarray(range.start, range.end + 1)
            : file.bytes
          : await files.read(file.key, range ?? undefined);
  reply
    .header('accept-ranges', 'bytes')
    .header('etag', v.etag)
    .header('last-modified', v.lastModified.toUTCString());
  if (decision.status === 304) return reply.status(304).send();
  if (decision.status === 416) {
    reply.header('content-range', unsatisfiedRange(size));
    return sendErrorTo(
      request,
      reply,
      new AppError(
        'RANGE_NOT_SATISFIABLE',
        `The file has ${size} bytes; the requested range is outside them.`,
      ),
    );
  }
  reply.header('content-type', file.contentType).header('content-disposition', file.contentDisposition);
  if (range) reply.status(206).header('content-range', contentRange(range, size));
  reply.header('content-length', String(range ? range.end - range.start + 1 : size));
  return reply.send(body);
}
