import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import fastifyStatic from '@fastify/static';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { parseBearer } from '../auth/authenticator.js';
import { safeEqual } from '../auth/passwords.js';
import { AppError } from '../errors.js';
import { requireInstructor } from '../http/auth-hooks.js';
import type { Services } from '../services.js';
import { VERSION } from '../version.js';
import { adminApiRoutes } from './routes.js';
import { createAdminRuntime, type AdminRuntime, type AdminRuntimeOptions } from './runtime.js';
import { computeStatus } from './status.js';

export type { AdminRuntime } from './runtime.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** The dashboard, metrics and alerts of this app (see src/admin). */
    admin: AdminRuntime;
  }
}

/**
 * The built dashboard (Vite output). Two levels above this file is the package root both from
 * `src/admin/` (tsx, tests) and from `dist/admin/` (the built server).
 */
export const UI_DIST = fileURLToPath(new URL('../../src/admin/ui/dist/', import.meta.url));

/** The dashboard loads only its own bundled script and styles (uPlot sets inline styles). */
const CSP =
  "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

const esc = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function page(title: string, body: string): string {
  return `<!doctype html><html lang="en"><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>${esc(title)}</title><style>body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;color:#1f2937}code{background:#f3f4f6;padding:.1rem .3rem;border-radius:4px}a{color:#1d4ed8}</style><h1>${esc(title)}</h1>${body}</html>`;
}

function wantsHtml(request: FastifyRequest): boolean {
  return (
    request.method === 'GET' &&
    !request.headers.upgrade &&
    (request.headers.accept ?? '').includes('text/html')
  );
}

/** Instructor-only; a participant's browser gets a page pointing to their own ComfyUI instead of JSON. */
function instructorsOnly(services: Services) {
  const guard = requireInstructor(services.auth);
  return async (request: FastifyRequest, reply: FastifyReply): Promise<unknown> => {
    try {
      return await guard(request, reply);
    } catch (err) {
      if (err instanceof AppError && err.code === 'FORBIDDEN' && wantsHtml(request) && request.principal) {
        const own = `/${encodeURIComponent(request.principal.name)}/`;
        return reply
          .status(403)
          .type('text/html; charset=utf-8')
          .header('cache-control', 'no-store')
          .send(
            page(
              'This page is for instructors',
              `<p>You are signed in as <b>${esc(request.principal.name)}</b>, a participant. Your ComfyUI is at <a href="${esc(own)}">${esc(own)}</a>.</p><p><a href="/logout">Sign in as someone else</a></p>`,
            ),
          );
      }
      throw err;
    }
  };
}

/**
 * Registers the instructor dashboard and monitoring on the root app (after @fastify/websocket):
 * - `/admin/` the dashboard page (static files built by Vite), `/admin/api/...` its API and the
 *   live WebSocket — instructors only;
 * - `GET /api/v1/status` — instructors and API tokens;
 * - `GET /metrics` — Prometheus text format, Bearer METRICS_TOKEN when one is set.
 * Timers start when the app is ready and stop when it closes.
 */
export async function adminRoutes(
  app: FastifyInstance,
  services: Services,
  opts: AdminRuntimeOptions = {},
): Promise<AdminRuntime> {
  const rt = await createAdminRuntime(services, opts);
  app.decorate('admin', rt);
  if (app.hasDecorator('websocketServer')) {
    const detach = services.connections.attach(app.websocketServer);
    app.addHook('onClose', async () => detach());
  }
  app.addHook('onReady', async () => rt.start());
  // Dashboards hold WebSockets open; close them first so the server can shut down.
  app.addHook('preClose', async () => rt.live.close());
  app.addHook('onClose', async () => rt.stop());

  const guard = instructorsOnly(services);

  await app.register(
    async (admin) => {
      admin.addHook('onRequest', guard);
      adminApiRoutes(admin, services, rt);
    },
    { prefix: '/admin/api' },
  );

  await app.register(async (ui) => {
    ui.addHook('onRequest', guard);
    const notBuilt = (reply: FastifyReply) =>
      reply
        .status(503)
        .type('text/html; charset=utf-8')
        .header('cache-control', 'no-store')
        .send(
          page(
            'The dashboard is not built',
            '<p>Build it with <code>npm run build</code> (or <code>npm run build:ui</code>) and reload this page. Everything else keeps working.</p>',
          ),
        );
    // The page itself, read on each visit so a rebuild shows at once. With ignoreTrailingSlash,
    // `/admin/` is looked up as `/admin`.
    ui.get('/admin', async (_request, reply) => {
      let html: string;
      try {
        html = await readFile(`${UI_DIST}index.html`, 'utf8');
      } catch {
        return notBuilt(reply);
      }
      return reply
        .type('text/html; charset=utf-8')
        .header('cache-control', 'no-cache')
        .header('x-content-type-options', 'nosniff')
        .header('referrer-policy', 'same-origin')
        .header('content-security-policy', CSP)
        .send(html);
    });
    if (existsSync(UI_DIST)) {
      await ui.register(fastifyStatic, {
        root: UI_DIST,
        prefix: '/admin/',
        decorateReply: false,
        index: false,
        cacheControl: false,
        setHeaders(res, path) {
          // Vite puts content hashes in asset names: cache them for good.
          res.header(
            'cache-control',
            /[\\/]assets[\\/]/.test(path) ? 'public, max-age=31536000, immutable' : 'no-cache',
          );
          res.header('x-content-type-options', 'nosniff');
        },
      });
    } else {
      services.logger.warn({ dir: UI_DIST }, 'the dashboard is not built; run `npm run build:ui`');
      ui.get('/admin/*', async (_request, reply) => notBuilt(reply));
    }
  });

  await app.register(
    async (api) => {
      api.addHook('onRequest', requireInstructor(services.auth));
      api.get('/status', async (_request, reply) => {
        const status = await computeStatus({
          store: services.store,
          workers: services.workerDirectory,
          tracker: services.connections,
          version: VERSION,
          startedAt: rt.startedAt,
          frontend: () => services.frontend.status(),
        });
        reply.header('cache-control', 'no-store');
        return reply.status(status.healthy ? 200 : 503).send(status);
      });
    },
    { prefix: '/api/v1' },
  );

  const metricsToken = services.config.METRICS_TOKEN;
  app.get('/metrics', async (request, reply) => {
    if (metricsToken) {
      const sent = parseBearer(request.headers.authorization);
      if (!sent) {
        reply.header('www-authenticate', 'Bearer realm="comfy-multi-metrics"');
        throw new AppError('UNAUTHORIZED', 'Send the metrics token: Authorization: Bearer <METRICS_TOKEN>.');
      }
      if (!safeEqual(sent, metricsToken)) throw new AppError('INVALID_TOKEN');
    }
    const text = await rt.metrics.text();
    return reply.type(rt.metrics.contentType).header('cache-control', 'no-store').send(text);
  });

  return rt;
}
