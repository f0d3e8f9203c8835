import { join } from 'node:path';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type {} from '@fastify/websocket'; // route option `websocket: true`
import type { WebSocket } from 'ws';
import { z } from 'zod';
import { userNameSchema } from '../auth/user-names.js';
import { CARDS_FILE, updateLoginMaterial } from '../auth/login-material-update.js';
import { participantsFilePath } from '../auth/login-material.js';
import { autoscaleHoldBody, autoscaleStopAllBody } from '../autoscale/routes.js';
import { publicBaseUrl } from '../config/public-url.js';
import { AppError } from '../errors.js';
import { parse } from '../http/parse.js';
import type { Services } from '../services.js';
import { PRIORITIES, QUEUE_MODES, type QueueLimits } from '../store/types.js';
import { USER_LEVELS } from '../scheduler/user-priority.js';
import { VERSION } from '../version.js';
import type { AdminRuntime } from './runtime.js';
import { CSRF_HEADER, checkSameOrigin } from './csrf.js';
import type { AuditAction, MeInfo } from './view-types.js';

const jobParams = z.strictObject({ id: z.string().min(1).max(128) });
const userParams = z.strictObject({ user: userNameSchema });
const workerParams = z.strictObject({ id: z.string().min(1).max(200) });
const empty = z.strictObject({});
const priorityBody = z.strictObject({ priority: z.enum(PRIORITIES) });
const modeBody = z.strictObject({ mode: z.enum(QUEUE_MODES) });
const pauseBody = z.strictObject({ paused: z.boolean() });
const pendingLimit = z.number().int().min(1).max(100_000);
const runningLimit = z.number().int().min(1).max(1000);
const queueLimitsBody = z
  .strictObject({ maxPendingPerUser: pendingLimit.optional(), maxRunningPerUser: runningLimit.optional() })
  .refine((b) => Object.keys(b).length > 0, 'give maxPendingPerUser and/or maxRunningPerUser');
/** `null` removes a user's override of that limit (the queue-wide limit applies again). */
const userLimitsBody = z.strictObject({
  maxPendingPerUser: pendingLimit.nullable().optional(),
  maxRunningPerUser: runningLimit.nullable().optional(),
});
const drainBody = z.strictObject({ draining: z.boolean() });
const userPriorityBody = z.strictObject({ priority: z.enum(USER_LEVELS).nullable() });
const broadcastBody = z.strictObject({ message: z.string().max(1000) });
const auditQuery = z.strictObject({ limit: z.coerce.number().int().min(1).max(200).default(100) });

/** The body of a POST that needs none: absent, or `{}`. */
function bodyOf(request: FastifyRequest): unknown {
  return request.body ?? {};
}

/**
 * The dashboard's API under `/admin/api` (instructor-only; the caller registers the auth hook):
 * reads (`me`, `state`, `audit`, the `live` WebSocket) and every action. Actions are POSTs with a
 * zod-checked JSON body, need the CSRF header (unless called with a Bearer API token), and are
 * recorded in the audit log whether they succeed or fail.
 */
export function adminApiRoutes(app: FastifyInstance, services: Services, rt: AdminRuntime): void {
  const { queue, store, accounts } = services;
  const { audit, live } = rt;

  // Cross-site WebSocket hijacking: a GET upgrade carries cookies but no CSRF header.
  app.addHook('onRequest', async (request) => {
    if (request.headers.upgrade) checkSameOrigin(request);
  });

  /** Runs an action: CSRF check, then `fn`, then one audit entry either way. */
  async function act<T>(
    request: FastifyRequest,
    action: AuditAction,
    target: string | null,
    fn: (details: Record<string, unknown>) => Promise<T>,
  ): Promise<T> {
    rt.csrf.check(request);
    const by = request.principal!.name;
    const details: Record<string, unknown> = {};
    const result = await audit.audited(by, action, target, fn, details);
    request.log.info({ by, action, target, details }, 'instructor action');
    return result;
  }

  app.get('/me', async (request, reply): Promise<MeInfo> => {
    const p = request.principal!;
    reply.header('cache-control', 'no-store');
    return {
      user: p.name,
      role: p.role,
      csrfToken: rt.csrf.tokenFor(p),
      version: VERSION,
      csrfHeader: CSRF_HEADER,
    };
  });

  app.get('/state', async (_request, reply) => {
    reply.header('cache-control', 'no-store');
    return { serverTime: Date.now(), sections: await live.snapshot(), series: rt.sampler.series() };
  });

  app.get('/audit', async (request) => {
    const q = parse(auditQuery, request.query);
    return { entries: await audit.recent(q.limit) };
  });

  app.get('/live', { websocket: true }, (socket: WebSocket, request: FastifyRequest) => {
    live.attach(socket, request.principal!.name);
  });

  // ---- jobs -------------------------------------------------------------------------------------

  app.post('/jobs/:id/cancel', (request) => {
    const { id } = parse(jobParams, request.params);
    parse(empty, bodyOf(request));
    return act(request, 'job.cancel', id, async (d) => {
      const before = await store.getJob(id);
      if (before) Object.assign(d, { user: before.user, number: before.seq, was: before.status });
      const job = await queue.cancel(id);
      return { id: job.id, status: job.status };
    });
  });

  app.post('/jobs/:id/front', (request) => {
    const { id } = parse(jobParams, request.params);
    parse(empty, bodyOf(request));
    return act(request, 'job.front', id, async (d) => {
      const before = await store.getJob(id);
      if (before) Object.assign(d, { user: before.user, number: before.seq });
      if (before && before.status !== 'pending') {
        throw new AppError(
          'CONFLICT',
          `Job #${before.seq} is not waiting (it is ${before.status}); only waiting jobs can move.`,
        );
      }
      const job = await queue.update(id, { front: true });
      return { id: job.id, position: await queue.positionOf(id) };
    });
  });

  app.post('/jobs/:id/priority', (request) => {
    const { id } = parse(jobParams, request.params);
    const { priority } = parse(priorityBody, request.body);
    return act(request, 'job.priority', id, async (d) => {
      const before = await store.getJob(id);
      if (before) Object.assign(d, { user: before.user, number: before.seq, from: before.priority });
      d.to = priority;
      const job = await queue.update(id, { priority });
      return { id: job.id, priority: job.priority, position: await queue.positionOf(id) };
    });
  });

  // ---- queue ------------------------------------------------------------------------------------

  app.post('/queue/mode', (request) => {
    const { mode } = parse(modeBody, request.body);
    return act(request, 'queue.mode', null, async (d) => {
      d.from = (await store.getSettings()).mode;
      d.to = mode;
      const s = await queue.updateSettings({ mode });
      return { mode: s.mode };
    });
  });

  app.post('/queue/pause', (request) => {
    const { paused } = parse(pauseBody, request.body);
    return act(request, paused ? 'queue.pause' : 'queue.resume', null, async () => {
      const s = await queue.updateSettings({ paused });
      return { paused: s.paused };
    });
  });

  app.post('/queue/limits', (request) => {
    const body = parse(queueLimitsBody, request.body);
    return act(request, 'queue.limits', null, async (d) => {
      d.from = (await store.getSettings()).limits;
      const s = await queue.updateSettings({ limits: body });
      d.to = s.limits;
      return { limits: s.limits };
    });
  });

  // ---- participants -------------------------------------------------------------------------------

  app.post('/users/:user/limits', (request) => {
    const { user } = parse(userParams, request.params);
    const body = parse(userLimitsBody, request.body);
    return act(request, 'user.limits', user, async (d) => {
      if (!(await accounts.get(user))) throw new AppError('USER_NOT_FOUND', `No user named ${user}.`);
      const settings = await store.getSettings();
      const current: Partial<QueueLimits> = { ...settings.userLimits[user] };
      d.from = { ...current };
      for (const k of ['maxPendingPerUser', 'maxRunningPerUser'] as const) {
        const v = body[k];
        if (v === null) delete current[k];
        else if (v !== undefined) current[k] = v;
      }
      const userLimits = { ...settings.userLimits };
      if (Object.keys(current).length === 0) delete userLimits[user];
      else userLimits[user] = current;
      d.to = { ...current };
      const s = await queue.updateSettings({ userLimits });
      return { user, limits: s.userLimits[user] ?? null, defaults: s.limits };
    });
  });

  // Raise (or lower) one participant: all their jobs, waiting now and queued later.
  app.post('/users/:user/priority', (request) => {
    const { user } = parse(userParams, request.params);
    const { priority } = parse(userPriorityBody, request.body);
    return act(request, 'user.priority', user, async (d) => {
      if (!(await accounts.get(user))) throw new AppError('USER_NOT_FOUND', `No user named ${user}.`);
      d.to = priority;
      const r = await queue.setUserLevel(user, priority);
      Object.assign(d, { from: r.from, jobsChanged: r.changed });
      live.markDirty('participants');
      return { user, priority, jobsChanged: r.changed };
    });
  });

  app.post('/users/:user/reset-password', (request, reply) => {
    const { user } = parse(userParams, request.params);
    parse(empty, bodyOf(request));
    reply.header('cache-control', 'no-store');
    return act(request, 'user.reset_password', user, async (d) => {
      const account = await accounts.get(user);
      if (!account) throw new AppError('USER_NOT_FOUND', `No user named ${user}.`);
      if (account.role !== 'participant') {
        throw new AppError(
          'FORBIDDEN',
          'Only participants’ passwords can be reset here; use `comfy-multi users reset-password` for instructors.',
        );
      }
      const { password, account: updated } = await accounts.resetPassword(user);
      d.sessionsEnded = true;
      // The new password reaches the participants file and so the next login cards.
      await updateLoginMaterial(
        store,
        participantsFilePath(services.config.DATA_DIR),
        publicBaseUrl(services.config),
        { passwords: new Map([[user, { password, version: updated.passwordVersion }]]) },
        { cardsPath: join(services.config.DATA_DIR, CARDS_FILE) },
      ).catch((err: unknown) => request.log.warn({ err }, 'could not update the participants file'));
      live.markDirty('participants');
      // Shown once, to this instructor only; never logged or audited.
      return { user, password };
    });
  });

  // ---- workers ------------------------------------------------------------------------------------

  app.post('/workers/:id/drain', (request) => {
    const { id } = parse(workerParams, request.params);
    const { draining } = parse(drainBody, request.body);
    return act(request, draining ? 'worker.drain' : 'worker.undrain', id, async (d) => {
      const entry = services.workerDirectory.get(id);
      if (entry) d.name = entry.name;
      // Runs on the process holding the worker's socket (this one, with a single process).
      const view = await services.workerCommands.drain(id, draining);
      rt.watcher.check();
      live.markDirty('workers');
      return { id: view.id, status: view.status, draining: view.draining };
    });
  });

  // ---- GPUs on demand (src/autoscale) ----------------------------------------------------------------

  app.post('/autoscale/hold', (request) => {
    const body = parse(autoscaleHoldBody, request.body);
    return act(request, 'autoscale.hold', null, async (d) => {
      const a = services.autoscaler;
      if (!a) throw new AppError('CONFLICT', 'Autoscaling is off (AUTOSCALE_PROVIDER=none).');
      Object.assign(d, body);
      a.setHold(body.count, body.minutes);
      return a.view();
    });
  });

  app.post('/autoscale/stop-all', (request) => {
    const body = parse(autoscaleStopAllBody, request.body);
    return act(request, 'autoscale.stop_all', null, async (d) => {
      const a = services.autoscaler;
      if (!a) throw new AppError('CONFLICT', 'Autoscaling is off (AUTOSCALE_PROVIDER=none).');
      d.on = body.on;
      a.setStopAll(body.on);
      return a.view();
    });
  });

  // ---- broadcast and alerts -------------------------------------------------------------------------

  app.post('/broadcast', (request) => {
    const { message } = parse(broadcastBody, request.body);
    const clearing = message.trim() === '';
    return act(request, clearing ? 'broadcast.clear' : 'broadcast.set', null, async (d) => {
      if (clearing) d.previous = (await services.broadcast.get())?.message ?? null;
      else d.message = message.trim();
      const b = await services.broadcast.set(message, request.principal!.name);
      return { message: b?.message ?? '', at: b?.at ?? null };
    });
  });

  app.post('/alerts/test', (request) => {
    parse(empty, bodyOf(request));
    return act(request, 'alerts.test', null, async (d) => {
      const rec = await rt.alerts.notify({
        event: 'test',
        key: `test:${Date.now()}`,
        severity: 'info',
        title: 'Test alert',
        message: `A test alert sent from the dashboard by ${request.principal!.name}. Alerts reach you.`,
        details: { by: request.principal!.name },
      });
      d.delivery = rec.delivery;
      return { delivery: rec.delivery, webhook: rt.alerts.webhookConfigured };
    });
  });
}
