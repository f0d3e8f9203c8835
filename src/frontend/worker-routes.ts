import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { AppError, type ErrorCode } from '../errors.js';
import { parse } from '../http/parse.js';
import { frontendOfferSchema, type FrontendOfferAnswer } from '../worker/protocol.js';
import type { FrontendCache } from './frontend-cache.js';

const shaParams = z.object({ sha256: z.string().regex(/^[0-9a-f]{64}$/, 'expected a lower-case sha256') });
const versionParams = z.object({ versionId: z.string().regex(/^[0-9a-f]{16}$/, 'expected a version id') });

/** What is mirrored at `/<prefix>/...` (the frontend, or ComfyUI's template library). */
export interface MirrorRoutesOptions {
  prefix: string;
  /** Validates an offer's body. */
  offerSchema: z.ZodType<z.infer<typeof frontendOfferSchema>>;
  /** The 409 answered when `cache` is null. */
  notWanted: ErrorCode;
}

/**
 * The frontend mirror for worker agents (mounted under /worker/v1 behind the worker-token hook);
 * the flow is described in src/worker/protocol.ts. `cache` is null when this control plane does
 * not mirror (FRONTEND_DIR set, or FRONTEND_MIRROR=false): every call answers FRONTEND_NOT_WANTED.
 * The same routes under `/templates` carry ComfyUI's template library (see src/templates).
 */
export async function frontendWorkerRoutes(
  app: FastifyInstance,
  cache: FrontendCache | null,
  opts: MirrorRoutesOptions = {
    prefix: '/frontend',
    offerSchema: frontendOfferSchema,
    notWanted: 'FRONTEND_NOT_WANTED',
  },
): Promise<void> {
  const { prefix } = opts;
  const wanted = (): FrontendCache => {
    if (!cache) throw new AppError(opts.notWanted);
    return cache;
  };
  const workerOf = (tokenName: string | null) => tokenName ?? 'unknown';

  app.post(`${prefix}/offers`, async (request): Promise<FrontendOfferAnswer> => {
    const c = wanted();
    const offer = parse(opts.offerSchema, request.body);
    return c.offer(offer, workerOf(request.workerTokenName));
  });

  app.post(`${prefix}/offers/:versionId/complete`, async (request): Promise<FrontendOfferAnswer> => {
    const { versionId } = parse(versionParams, request.params);
    return wanted().complete(versionId);
  });

  await app.register(async (blobs) => {
    // Bodies are file contents: any content type, left as a stream for the handler.
    blobs.removeAllContentTypeParsers();
    blobs.addContentTypeParser('*', (_request, _payload, done) => done(null));
    blobs.put(`${prefix}/blobs/:sha256`, async (request) => {
      const { sha256 } = parse(shaParams, request.params);
      return wanted().receive(sha256, request.raw);
    });
  });
}
