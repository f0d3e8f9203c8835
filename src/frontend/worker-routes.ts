import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { AppError } from '../errors.js';
import { parse } from '../http/parse.js';
import { frontendOfferSchema, type FrontendOfferAnswer } from '../worker/protocol.js';
import type { FrontendCache } from './frontend-cache.js';

const shaParams = z.object({ sha256: z.string().regex(/^[0-9a-f]{64}$/, 'expected a lower-case sha256') });
const versionParams = z.object({ versionId: z.string().regex(/^[0-9a-f]{16}$/, 'expected a version id') });

/**
 * The frontend mirror for worker agents (mounted under /worker/v1 behind the worker-token hook);
 * the flow is described in src/worker/protocol.ts. `cache` is null when this control plane does
 * not mirror (FRONTEND_DIR set, or FRONTEND_MIRROR=false): every call answers FRONTEND_NOT_WANTED.
 */
export async function frontendWorkerRoutes(app: FastifyInstance, cache: FrontendCache | null): Promise<void> {
  const wanted = (): FrontendCache => {
    if (!cache) throw new AppError('FRONTEND_NOT_WANTED');
    return cache;
  };
  const workerOf = (tokenName: string | null) => tokenName ?? 'unknown';

  app.post('/frontend/offers', async (request): Promise<FrontendOfferAnswer> => {
    const c = wanted();
    const offer = parse(frontendOfferSchema, request.body);
    return c.offer(offer, workerOf(request.workerTokenName));
  });

  app.post('/frontend/offers/:versionId/complete', async (request): Promise<FrontendOfferAnswer> => {
    const { versionId } = parse(versionParams, request.params);
    return wanted().complete(versionId);
  });

  await app.register(async (blobs) => {
    // Bodies are file contents: any content type, left as a stream for the handler.
    blobs.removeAllContentTypeParsers();
    blobs.addContentTypeParser('*', (_request, _payload, done) => done(null));
    blobs.put('/frontend/blobs/:sha256', async (request) => {
      const { sha256 } = parse(shaParams, request.params);
      return wanted().receive(sha256, request.raw);
    });
  });
}
