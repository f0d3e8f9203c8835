import { createHash } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { AppError } from '../errors.js';
import { parse } from '../http/parse.js';
import { getBroadcast } from '../broadcast/broadcast.js';
import { isInstructor } from './access.js';
import type { GatewayDeps } from './deps.js';
import { NO_ENV_HINT, currentEnv } from './environment.js';
import { both, emptyOk, jsonBody, userOf } from './http-util.js';
import type { UserSpace } from './user-space.js';
import { WORKSHOP_EXTENSION_JS, WORKSHOP_EXTENSION_PATH } from './workshop-extension.js';

const AVG_TTL_MS = 30_000;

const broadcastBody = z.strictObject({ message: z.string().max(1000) });

/**
 * The workshop extension and what it shows: `GET /comfy-multi/status` (the participant's queue,
 * position, estimated wait, GPU presence, instructor message, default workflow to open), and
 * `POST /comfy-multi/broadcast` for instructors.
 */
export function statusRoutes(app: FastifyInstance, deps: GatewayDeps, space: UserSpace): void {
  let avg: { at: number; ms: number | null } | null = null;
  const averageJobMs = async (): Promise<number | null> => {
    const now = deps.clock();
    if (avg && now - avg.at < AVG_TTL_MS) return avg.ms;
    const rows = await deps.store.userCounters();
    let ms = 0;
    let n = 0;
    for (const r of rows) {
      ms += r.gpuMs;
      n += r.completed + r.failed;
    }
    avg = { at: now, ms: n > 0 ? ms / n : null };
    return avg.ms;
  };

  // Revalidated on every page load: a weak ETag (the same for its compressed forms) makes that a 304.
  const etag = `W/"${createHash('sha256').update(WORKSHOP_EXTENSION_JS).digest('hex').slice(0, 32)}"`;
  for (const path of [WORKSHOP_EXTENSION_PATH, `/api${WORKSHOP_EXTENSION_PATH}`]) {
    app.get(path, async (request, reply) => {
      reply
        .type('text/javascript; charset=utf-8')
        .header('cache-control', 'no-cache')
        .header('etag', etag)
        .header('vary', 'Accept-Encoding');
      const tags = String(request.headers['if-none-match'] ?? '').split(',');
      if (tags.some((t) => t.trim().replace(/^W\//, '') === etag.slice(2))) return reply.status(304).send();
      return reply.send(WORKSHOP_EXTENSION_JS);
    });
  }

  both(app, 'GET', '/comfy-multi/status', async (request, reply) => {
    const user = userOf(request);
    const [counts, pending, env, broadcast, state] = await Promise.all([
      deps.store.countByStatus(user),
      deps.queue.pendingOrder(),
      currentEnv(deps.store),
      getBroadcast(deps.store),
      space.getState(user),
    ]);
    const index = pending.findIndex((j) => j.user === user);
    const position = index < 0 ? null : index + 1;
    const workers = deps.workers ? deps.workers.online().length : null;
    let estimatedWaitSeconds: number | null = null;
    if (position !== null && workers) {
      const ms = await averageJobMs();
      if (ms !== null) estimatedWaitSeconds = Math.round((Math.ceil(position / workers) * ms) / 1000);
    }
    // A job claimed by a worker counts as running in the queue, but one prefetched into ComfyUI's
    // own queue has not started: the participant sees it as "next on a GPU", not as running.
    let startingSoon = 0;
    for (const w of deps.workers?.online() ?? [])
      for (const h of w.held.values()) if (h.user === user && h.state !== 'running') startingSoon += 1;
    startingSoon = Math.min(startingSoon, counts.running);
    reply.header('cache-control', 'no-store');
    return {
      user,
      pending: counts.pending,
      running: counts.running - startingSoon,
      startingSoon,
      position,
      estimatedWaitSeconds,
      gpu: {
        online: (workers ?? 0) > 0,
        workers: workers ?? 0,
        known: workers !== null,
        // GPUs on demand: one is starting (ETA from measured start times; null before the first).
        starting: deps.gpuStarting?.() ?? null,
      },
      hasEnvironment: env !== null,
      hint: env ? null : NO_ENV_HINT,
      broadcast: broadcast ? { message: broadcast.message, at: new Date(broadcast.at).toISOString() } : null,
      defaultWorkflow:
        state && state.defaultWorkflow && !state.defaultWorkflowOpened ? state.defaultWorkflow : null,
    };
  });

  both(app, 'POST', '/comfy-multi/default-workflow/opened', async (request, reply) => {
    await space.markDefaultWorkflowOpened(userOf(request));
    return emptyOk(reply, 204);
  });

  both(app, 'GET', '/comfy-multi/broadcast', async () => {
    const b = await getBroadcast(deps.store);
    return { message: b?.message ?? '', at: b ? new Date(b.at).toISOString() : null };
  });

  both(app, 'POST', '/comfy-multi/broadcast', async (request) => {
    if (!isInstructor(request)) throw new AppError('FORBIDDEN', 'Only instructors may broadcast messages.');
    const body = parse(broadcastBody, jsonBody(request));
    const by = request.principal!.name;
    const clearing = body.message.trim() === '';
    const previous = clearing ? ((await deps.broadcast.get())?.message ?? null) : undefined;
    const b = await deps.broadcast.set(body.message, by);
    // Audited like the dashboard's action, so the activity log shows every banner change.
    await deps.audit.record({
      by,
      action: clearing ? 'broadcast.clear' : 'broadcast.set',
      target: null,
      details: clearing ? { previous, via: 'comfyui' } : { message: body.message.trim(), via: 'comfyui' },
      ok: true,
    });
    return { message: b?.message ?? '', at: b ? new Date(b.at).toISOString() : null };
  });
}
