import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import cookie from '@fastify/cookie';
import { installErrorHandling } from './http/error-handler.js';
import { installTransportSecurity } from './http/transport-security.js';
import { installBoundedJsonParser } from './http/json-depth.js';
import { installWsPayloadLimits } from './http/ws-limits.js';
import { installRequestTimeouts, serverOptions } from './http/server-options.js';
import { requireInstructor } from './http/auth-hooks.js';
import { loginRoutes } from './auth/login-routes.js';
import { startRoutes } from './auth/start-routes.js';
import { loginCardsRoutes } from './auth/login-cards-routes.js';
import { frontendAdminRoutes, frontendRootRoutes } from './frontend/index.js';
import { healthRoutes } from './api/health-routes.js';
import { jobsRoutes } from './api/jobs-routes.js';
import { workflowRoutes } from './api/workflow-routes.js';
import { TemplateSource } from './gateway/templates.js';
import { templateAdminRoutes } from './api/template-admin-routes.js';
import { queueRoutes } from './api/queue-routes.js';
import fastifyWebsocket from '@fastify/websocket';
import { CLOSE_SERVICE_RESTART } from './worker/protocol.js';
import { workerApi } from './dispatch/worker-api.js';
import { workersRoutes } from './dispatch/workers-routes.js';
import { modelsRoutes } from './api/models-routes.js';
import type { Services } from './services.js';
import { VERSION } from './version.js';
import { gatewayPlugin } from './gateway/index.js';
import { adminRoutes } from './admin/index.js';
import { autoscaleRoutes } from './autoscale/routes.js';
import { syncLiveFeed } from './cluster/live-sync.js';

/**
 * @fastify/websocket's `preClose` on shutdown: every WebSocket (participants' `/ws`, the dashboard,
 * workers) is closed with 1012 "service restart", on which the ComfyUI frontend and the worker agent
 * reconnect at once (through the load balancer, to another process). The plugin's default closed
 * them without a code.
 */
function closeSocketsForRestart(this: FastifyInstance, done: () => void): void {
  const server = this.websocketServer;
  for (const client of server.clients) client.close(CLOSE_SERVICE_RESTART, 'server restarting');
  server.close(() => undefined);
  done();
}

export interface BuildAppOptions {
  /** Serve HTTPS with this certificate and key (PEM); see src/http/listen.ts. */
  https?: { cert: Buffer; key: Buffer };
}

/** Builds the HTTP app without listening, so tests drive it with `inject`. */
export async function buildApp(services: Services, opts: BuildAppOptions = {}): Promise<FastifyInstance> {
  const { config, logger } = services;
  const app = Fastify({
    // pino's Logger is a FastifyBaseLogger; the cast keeps the instance's generic at the default.
    loggerInstance: logger as FastifyBaseLogger,
    trustProxy: config.TRUST_PROXY,
    // Body size, request time, URL parameter length; ComfyUI's frontend calls /api/x and /api/x/
    // interchangeably (see src/http/server-options.ts).
    ...serverOptions(config),
    // While closing (SIGTERM), requests that still reach this process on an open keep-alive
    // connection are served (with `Connection: close`) instead of getting fastify's bare 503: the
    // store is open until every one has finished, and a load balancer cannot safely retry a 503
    // POST elsewhere. New connections are refused, which every load balancer retries.
    return503OnClosing: false,
    ...(opts.https ? { https: opts.https } : {}),
    // Typed as the default (http) instance: routes and plugins are the same either way, and only
    // src/http/listen.ts touches the server itself (setSecureContext on SIGHUP).
  }) as unknown as FastifyInstance;
  app.decorateRequest('principal', null);
  installErrorHandling(app);
  installTransportSecurity(app, { publicUrl: config.PUBLIC_URL, hstsMaxAge: config.HSTS_MAX_AGE });
  installRequestTimeouts(app, config);
  installBoundedJsonParser(app);
  await app.register(cookie);

  healthRoutes(app, { store: services.store, version: VERSION });
  // In its own scope, so the login form's urlencoded parser does not apply to ComfyUI's routes.
  await app.register(async (scope) => loginRoutes(scope, services.auth));
  // `/` (the start page) and `/login/t/<token>` (login cards' sign-in links).
  startRoutes(app, { auth: services.auth, store: services.store });
  frontendRootRoutes(app, services.frontend);

  await app.register(
    async (api) => {
      api.addHook('onRequest', requireInstructor(services.auth));
      // Readers see every process's workers (the local registry alone with one process).
      const readers = { ...services, workers: services.workerDirectory };
      jobsRoutes(api, readers);
      workflowRoutes(api, {
        ...readers,
        templates: new TemplateSource(
          services.config.TEMPLATES_DIR ?? null,
          services.config.DEFAULT_WORKFLOW ?? null,
        ),
      });
      templateAdminRoutes(api, {
        ...services,
        templates: new TemplateSource(
          services.config.TEMPLATES_DIR ?? null,
          services.config.DEFAULT_WORKFLOW ?? null,
        ),
      });
      queueRoutes(api, services);
      workersRoutes(api, services);
      modelsRoutes(api, services);
      loginCardsRoutes(api, services);
      autoscaleRoutes(api, services);
      frontendAdminRoutes(api, {
        site: services.frontend,
        cache: services.frontendCache,
        audit: services.audit,
      });
    },
    { prefix: '/api/v1' },
  );

  if (!app.hasPlugin('@fastify/websocket'))
    await app.register(fastifyWebsocket, { preClose: closeSocketsForRestart });
  installWsPayloadLimits(app.websocketServer, config.WORKER_WS_MAX_PAYLOAD);
  await workerApi(app, services);
  // The dashboard (/admin/), /api/v1/status and /metrics; after @fastify/websocket.
  await adminRoutes(app, services);
  app.addHook('onReady', async () => services.dispatcher.start());
  app.addHook('preClose', async () => services.hub.closeAll());
  app.addHook('onClose', async () => services.dispatcher.stop());
  // GPUs on demand: after the dispatcher, so a worker started for a waiting job gets it at once.
  app.addHook('onReady', async () => services.autoscaler?.start());
  app.addHook('onClose', async () => {
    await services.autoscaler?.stop();
    await services.autoscaler?.provider.close();
  });
  app.addHook('onClose', async () => services.bcrypt.close());
  app.addHook('onClose', async () => {
    await services.frontendShare?.close();
    await services.frontend.close();
  });
  app.addHook('onClose', async () => services.templateLibrary?.close());
  // Worker presence, worker commands, model downloads and the dashboard's live feed across
  // processes (no-ops with one).
  let stopLiveFeed = () => {};
  app.addHook('onReady', async () => {
    services.workerDirectory.start();
    services.workerCommands.start();
    services.modelRelay.start();
    stopLiveFeed = syncLiveFeed(services.cluster, services.audit, services.broadcast, (err) =>
      services.logger.warn({ err }, 'cluster live feed problem'),
    );
  });
  // The event relay before the bus it publishes on.
  app.addHook('onClose', async () => {
    stopLiveFeed();
    services.workerCommands.stop();
    services.modelRelay.stop();
    await services.workerDirectory.stop();
    await services.events?.close();
    await services.cluster.close();
  });

  await app.register(gatewayPlugin(services), { prefix: '/:user' });
  return app;
}
