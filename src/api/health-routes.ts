import type { FastifyInstance } from 'fastify';
import type { JobStore } from '../store/types.js';
import { AppError } from '../errors.js';

/** What `/health` answers (also on the plain-HTTP redirect listener). */
export function healthBody(version: string): { status: 'ok'; version: string } {
  return { status: 'ok', version };
}

/** Apps whose process is shutting down (SIGTERM): their `/health` and `/ready` say so. */
const draining = new WeakSet<FastifyInstance>();

/**
 * From now on `/health` and `/ready` answer 503 SHUTTING_DOWN, so a load balancer's health check
 * (HAProxy, nginx plus, a Kubernetes readiness probe) stops routing here while the requests
 * already on their way still finish. Called first thing on SIGTERM, and by `app.close()` anyway.
 */
export function markDraining(app: FastifyInstance): void {
  draining.add(app);
}

export function isDraining(app: FastifyInstance): boolean {
  return draining.has(app);
}

function drainingError(): AppError {
  return new AppError('SHUTTING_DOWN', undefined, {
    details: { status: 'draining' },
    retryAfter: 1,
  });
}

/**
 * `/health` says the process answers; `/ready` also checks the store. Neither needs auth. Both
 * answer 503 SHUTTING_DOWN once the process is draining (see {@link markDraining}).
 */
export function healthRoutes(app: FastifyInstance, deps: { store: JobStore; version: string }): void {
  app.addHook('preClose', async () => markDraining(app));
  // A response finished while draining ends its connection: otherwise a keep-alive connection that
  // was busy when the server closed stays open, idle, for keepAliveTimeout (the exit waits for
  // it) and the load balancer may still send it the next request.
  // Callback style: no promise per request on the single-process path.
  app.addHook('onSend', (_request, reply, payload, done) => {
    if (draining.has(app)) reply.header('connection', 'close');
    done(null, payload);
  });

  // A WebSocket upgrade that reaches a draining process on a kept-alive connection finds the upgrade
  // listener gone (@fastify/websocket removes it on close) and would get a 404: say 503 instead, so
  // the load balancer tries the next process (`proxy_next_upstream http_503`) and the client never
  // sees it.
  app.addHook('onRequest', (request, _reply, done) => {
    if (draining.has(app) && /^websocket$/i.test(request.headers.upgrade ?? '')) done(drainingError());
    else done();
  });

  app.get('/health', () => {
    if (draining.has(app)) throw drainingError();
    return healthBody(deps.version);
  });

  app.get('/ready', async () => {
    if (draining.has(app)) throw drainingError();
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
