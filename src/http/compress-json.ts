/**
 * Compression of the gateway's larger JSON, text and script answers (the workshop extension), as
 * ComfyUI's `--enable-compress-response-body` does: `object_info` alone is about 320 kB of JSON on every page
 * load and shrinks to under 30 kB. Made per answer (it differs per participant: their input files
 * are in it) with fast settings, brotli quality 5 (about 4 ms for object_info) or gzip level 6, in
 * zlib's thread pool. Files are not handled here: they are served from precompressed copies
 * (src/frontend/precompress.ts) or as they are (images and videos compress no further).
 */
import { promisify } from 'node:util';
import { brotliCompress, constants, gzip } from 'node:zlib';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { chooseEncoding } from './accept-encoding.js';

/** Below this an answer fits in a packet or two anyway. */
export const COMPRESS_MIN_BYTES = 1400;

const brotli = promisify(brotliCompress);
const gz = promisify(gzip);

function compressible(reply: FastifyReply): boolean {
  const type = String(reply.getHeader('content-type') ?? '');
  return (
    /^(application\/json|text\/plain|text\/javascript)\b/i.test(type) &&
    reply.getHeader('content-encoding') === undefined
  );
}

async function compress(request: FastifyRequest, reply: FastifyReply, payload: unknown): Promise<unknown> {
  if (request.method === 'HEAD' || reply.statusCode < 200 || reply.statusCode === 204) return payload;
  if (typeof payload !== 'string' && !Buffer.isBuffer(payload)) return payload;
  if (!compressible(reply)) return payload;
  const body = typeof payload === 'string' ? Buffer.from(payload) : payload;
  if (body.length < COMPRESS_MIN_BYTES) return payload;
  reply.header('vary', 'Accept-Encoding');
  const ae = request.headers['accept-encoding'];
  const coding = chooseEncoding(Array.isArray(ae) ? ae.join(', ') : ae, ['br', 'gzip']);
  if (coding === 'identity') return payload;
  const out =
    coding === 'br'
      ? await brotli(body, {
          params: {
            [constants.BROTLI_PARAM_QUALITY]: 5,
            [constants.BROTLI_PARAM_SIZE_HINT]: body.length,
            [constants.BROTLI_PARAM_MODE]: constants.BROTLI_MODE_TEXT,
          },
        })
      : await gz(body, { level: 6 });
  reply.header('content-encoding', coding);
  reply.removeHeader('content-length');
  return out;
}

/** Compresses JSON and plain-text answers of `scope` for clients that take brotli or gzip. */
export function installJsonCompression(scope: FastifyInstance): void {
  scope.addHook('onSend', async (request, reply, payload) => compress(request, reply, payload));
}
