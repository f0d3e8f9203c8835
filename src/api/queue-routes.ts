import type { FastifyInstance } from 'fastify';
import type { AuditLog } from '../admin/audit-log.js';
import { parse } from '../http/parse.js';
import type { QueueService } from '../scheduler/queue-service.js';
import { callerOf } from './jobs-routes.js';
import { putQueueBody } from './schemas.js';

/**
 * `/api/v1/queue`: the whole queue at a glance, and switching mode, pausing or the limits. Each
 * change is one activity-log entry, as the dashboard records it (`queue.mode`, `queue.pause` /
 * `queue.resume`, `queue.limits`).
 */
export function queueRoutes(app: FastifyInstance, deps: { queue: QueueService; audit: AuditLog }): void {
  const { queue, audit } = deps;
  app.get('/queue', () => queue.snapshot());

  app.put('/queue', async (request) => {
    const body = parse(putQueueBody, request.body);
    const by = callerOf(request);
    request.log.info({ by, change: body }, 'queue settings changed');
    if (body.mode !== undefined) {
      const mode = body.mode;
      await audit.audited(by, 'queue.mode', null, async (d) => {
        Object.assign(d, { via: 'api', from: (await queue.store.getSettings()).mode, to: mode });
        await queue.updateSettings({ mode });
      });
    }
    if (body.paused !== undefined) {
      const paused = body.paused;
      await audit.audited(by, paused ? 'queue.pause' : 'queue.resume', null, async (d) => {
        d.via = 'api';
        await queue.updateSettings({ paused });
      });
    }
    if (body.limits !== undefined) {
      const limits = body.limits;
      await audit.audited(by, 'queue.limits', null, async (d) => {
        Object.assign(d, { via: 'api', from: (await queue.store.getSettings()).limits });
        d.to = (await queue.updateSettings({ limits })).limits;
      });
    }
    return queue.snapshot();
  });
}
