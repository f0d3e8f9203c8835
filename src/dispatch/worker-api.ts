import type { FastifyInstance } from 'fastify';
import type { Services } from '../services.js';
import { requireWorkerToken } from './worker-auth.js';
import { workerFilesRoutes } from './worker-files-routes.js';
import { frontendWorkerRoutes } from '../frontend/index.js';
import { templateLibraryWorkerRoutes } from '../templates/library.js';

/**
 * Everything under `/worker/v1`, for worker agents only (Bearer worker token, checked before any
 * WebSocket upgrade): the hub socket `GET /worker/v1/ws`, the file transfer routes, the frontend mirror and
 * the template library mirror.
 * Needs @fastify/websocket registered on the root instance.
 */
export async function workerApi(app: FastifyInstance, services: Services): Promise<void> {
  await app.register(
    async (w) => {
      w.decorateRequest('workerTokenName', null);
      w.decorateRequest('workerTokenHash', null);
      w.addHook('onRequest', requireWorkerToken(services.workerTokens));
      services.hub.routes(w);
      await workerFilesRoutes(w, {
        store: services.store,
        files: services.files,
        uploadLimit: services.config.OUTPUT_UPLOAD_LIMIT,
        inFlight: services.inFlight,
        workers: services.workers,
      });
      await frontendWorkerRoutes(w, services.frontendCache);
      await templateLibraryWorkerRoutes(w, services.templateLibrary);
    },
    { prefix: '/worker/v1' },
  );
}
