import type { FastifyReply, FastifyRequest } from 'fastify';
import { AppError } from '../errors.js';
import { parseBearer } from '../auth/authenticator.js';
import { hashToken } from '../auth/passwords.js';
import type { WorkerTokenService } from '../auth/worker-tokens.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** Name of the worker token the request authenticated with (routes under /worker/v1 only). */
    workerTokenName: string | null;
    /** sha256 of that token, to re-check it while a worker stays connected (never the token). */
    workerTokenHash: string | null;
  }
}

/** How long a file transfer may rely on the store's last word that its worker token is valid. */
const TRANSFER_TOKEN_REUSE_MS = 1000;

/**
 * An onRequest hook for `/worker/v1`: requires `Authorization: Bearer <worker token>`. Runs before
 * the WebSocket upgrade, so a wrong or revoked token gets a plain 401 JSON error and no socket.
 * Wrong and revoked tokens get the same answer. The upgrade always asks the store; file transfers
 * (output uploads are on every job's round trip) reuse its answer for up to a second (see
 * {@link WorkerTokenService.verifyHashRecent}).
 */
export function requireWorkerToken(tokens: WorkerTokenService) {
  return async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const token = parseBearer(request.headers.authorization);
    if (!token) {
      reply.header('www-authenticate', 'Bearer realm="comfy-multi-worker"');
      throw new AppError('UNAUTHORIZED', 'A worker token is required: Authorization: Bearer <token>.');
    }
    const hash = hashToken(token);
    const name =
      request.headers.upgrade === undefined
        ? await tokens.verifyHashRecent(hash, TRANSFER_TOKEN_REUSE_MS)
        : await tokens.verifyHash(hash);
    if (!name) throw new AppError('INVALID_TOKEN');
    request.workerTokenName = name;
    request.workerTokenHash = hash;
  };
}
