import type { FastifyInstance } from 'fastify';
import type { Services } from '../services.js';
import { requireWorkerToken } from './worker-auth.js';
import { workerFilesRoutes } from './worker-files-routes.js';

/**
 * Everything under `/worker/v1`, for worker agents only (Bearer worker token, checked before any
 * WebSocket upgrade): the hub socket `GET /worker/v1/ws` and the file transfer routes.
 * Needs @fastify/websocket registered on the root instance.
 */
export async function workerApi(app: FastifyInstance, services: Services): Promise<void> {
  await app.register(
    async (w) => {
      w.decorateRequest('workerTokenName', null);
      w.addHook('onRequest', requireWorkerToken(services.workerTokens));
      services.hub.routes(w);
      await workerFilesRoutes(w, {
        store: services.store,
        files: services.files,
        uploadLimit: services.config.OUTPUT_UPLOAD_LIMIT,
      });
    },
    { prefix: '/worker/v1' },
  );
}
