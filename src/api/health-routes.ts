import type { FastifyInstance } from 'fastify';
import type { JobStore } from '../store/types.js';
import { AppError } from '../errors.js';

/** What `/health` answers (also on the plain-HTTP redirect listener). */
export function healthBody(version: string): { status: 'ok'; version: string } {
  return { status: 'ok', version };
}

/** `/health` says the process answers; `/ready` also checks the store. Neither needs auth. */
export function healthRoutes(app: FastifyInstance, deps: { store: JobStore; version: string }): void {
  app.get('/health', () => healthBody(deps.version));

  app.get('/ready', async () => {
    try {
      await deps.store.ping();
    } catch (err) {
      throw new AppError('STORE_UNAVAILABLE', `The ${deps.store.backend} store cannot be reached.`, {
        cause: err,
        retryAfter: 5,
      });
    }
    return { status: 'ready', store: deps.store.backend };
  });
}
