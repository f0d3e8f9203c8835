import type { FastifyInstance } from 'fastify';
import type { FrontendSite } from './frontend-site.js';

/**
 * A few frontend files are requested from the site root whatever the page path (the favicon and
 * its progress frames, some logos): serve the frontend's public `assets/` there, without a login,
 * since they are the same for everyone and hold no user data.
 */
export function frontendRootRoutes(app: FastifyInstance, frontend: FrontendSite): void {
  app.get('/assets/*', async (request, reply) =>
    frontend.serveAsset(request, reply, `assets/${(request.params as { '*': string })['*']}`),
  );
  app.get('/favicon.ico', async (request, reply) =>
    frontend.serveAsset(request, reply, 'assets/favicon.ico'),
  );
}
