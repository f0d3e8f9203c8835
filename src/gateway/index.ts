import multipart from '@fastify/multipart';
import type { FastifyInstance, FastifyPluginAsync, FastifyRequest } from 'fastify';
import type { WebSocket } from 'ws';
import type { Services } from '../services.js';
import { gatewayAccess } from './access.js';
import { gatewayDeps, type GatewayDeps } from './deps.js';
import { envRoutes } from './env-routes.js';
import { serverFeatures } from './environment.js';
import { fileRoutes } from './file-routes.js';
import { galleryRoutes } from './gallery.js';
import { loraRoutes } from './lora-routes.js';
import { userOf } from './http-util.js';
import { queueRoutes } from './queue-routes.js';
import { statusRoutes } from './status-routes.js';
import { templateRoutes } from './template-routes.js';
import { templateLibraryRoutes } from './template-library-routes.js';
import { UserSpace } from './user-space.js';
import { userdataRoutes } from './userdata-routes.js';
import { UserWsHub } from './ws-hub.js';
import { WsSessionWatch } from './ws-session-watch.js';
import { SESSION_COOKIE } from '../auth/sessions.js';
import { AppError } from '../errors.js';
import { checkSameOrigin } from '../http/same-origin.js';
import { installJsonCompression } from '../http/compress-json.js';

export type { GatewayDeps } from './deps.js';

/**
 * The per-user ComfyUI API: every route ComfyUI's web frontend calls, answered for one
 * participant at `/<user>/x` and `/<user>/api/x`, over that participant's own queue, history,
 * files and progress. Register with `app.register(gatewayPlugin(services), { prefix: '/:user' })`
 * (needs @fastify/websocket on the root instance for `/ws`).
 */
export function gatewayPlugin(services: Services): FastifyPluginAsync {
  return async (app: FastifyInstance) => {
    const deps: GatewayDeps = gatewayDeps(services);
    const space = new UserSpace(
      deps.files,
      deps.store,
      deps.templates,
      deps.clock,
      deps.config.SETTINGS_LIMIT,
      deps.workshopTemplates,
    );

    // ComfyUI reads bodies with aiohttp whatever their Content-Type (its frontend posts JSON as
    // text/plain, userdata as anything): every body reaches the handlers as raw bytes.
    app.removeContentTypeParser(['application/json', 'text/plain']);
    app.addContentTypeParser(['application/json', 'text/plain'], { parseAs: 'buffer' }, (_req, body, done) =>
      done(null, body),
    );
    app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
    if (!app.hasRequestDecorator('parts')) {
      await app.register(multipart, {
        limits: { fileSize: deps.config.UPLOAD_LIMIT, files: 4, fields: 20, fieldSize: 64 * 1024, parts: 30 },
      });
    }

    app.addHook('onRequest', gatewayAccess(deps));
    // object_info & co. travel compressed, as from ComfyUI with --enable-compress-response-body.
    installJsonCompression(app);

    // `/<user>` → `/<user>/`; `/<user>/` itself is the ComfyUI frontend's index.html.
    app.get('/', async (request, reply) => {
      const user = userOf(request);
      const [path, query] = splitUrl(request.raw.url ?? '');
      if (!path.endsWith('/')) return reply.redirect(`/${encodeURIComponent(user)}/${query}`, 302);
      return deps.frontend.serveIndex(request, reply);
    });

    const hub = new UserWsHub({
      store: deps.store,
      queue: deps.queue,
      bus: deps.bus,
      events: deps.events ?? null,
      logger: deps.logger,
      serverFeatures: () => serverFeatures(deps.config.UPLOAD_LIMIT),
    });
    const sessions = new WsSessionWatch();
    app.addHook('onClose', async () => {
      hub.close();
      sessions.close();
    });
    if (app.hasDecorator('websocketServer')) {
      for (const path of ['/ws', '/api/ws']) {
        // Cross-site WebSocket hijacking: an upgrade carries the session cookie but no CSRF
        // check; a page of another site must not open a participant's socket.
        const preHandler = async (request: FastifyRequest) =>
          checkSameOrigin(request, deps.config.PUBLIC_URL);
        app.get(path, { websocket: true, preHandler }, (socket: WebSocket, request: FastifyRequest) => {
          hub.attach(
            userOf(request),
            (request.query as Record<string, unknown> | undefined)?.clientId,
            socket,
            request.raw.socket,
          );
          const token = request.cookies?.[SESSION_COOKIE];
          if (request.principal?.via === 'session' && token) {
            sessions.add(socket, () => deps.auth.sessionValid(token));
          }
        });
      }
    } else {
      deps.logger.warn('@fastify/websocket is not registered; participants get no /ws');
    }

    envRoutes(app, deps);
    userdataRoutes(app, space, deps.config);
    templateRoutes(app, deps);
    templateLibraryRoutes(app, deps);
    queueRoutes(app, deps);
    fileRoutes(app, deps);
    loraRoutes(app, deps);
    galleryRoutes(app, deps);
    statusRoutes(app, deps, space);

    // index.html links `user.css`, which no frontend ships (ComfyUI answers 404 unless an admin
    // put one in its web root): an empty stylesheet saves every page load a console error.
    app.get('/user.css', async (request, reply) =>
      deps.frontend.serveAsset(request, reply, 'user.css').catch((err: unknown) => {
        if (!(err instanceof AppError) || err.code !== 'NOT_FOUND') throw err;
        return reply.type('text/css; charset=utf-8').header('cache-control', 'no-cache').send('');
      }),
    );

    // Everything else under /<user>/ is a file of the ComfyUI frontend (its bundles, fonts,
    // bundled extensions). Fastify tries every route above first.
    app.get('/*', async (request, reply) =>
      deps.frontend.serveAsset(request, reply, (request.params as { '*': string })['*']),
    );
  };
}

function splitUrl(url: string): [string, string] {
  const i = url.indexOf('?');
  return i < 0 ? [url, ''] : [url.slice(0, i), url.slice(i)];
}
