import type { FastifyInstance } from 'fastify';
import type { AuditLog } from '../admin/audit-log.js';
import { z } from 'zod';
import type { AccountService } from '../auth/account-service.js';
import { userNameSchema } from '../auth/user-names.js';
import { AppError } from '../errors.js';
import { parse } from '../http/parse.js';
import type { QueueService } from '../scheduler/queue-service.js';
import { USER_LEVELS } from '../scheduler/user-priority.js';
import { callerOf } from './jobs-routes.js';
import { putQueueBody } from './schemas.js';

const userParams = z.strictObject({ user: userNameSchema });
const userPriorityBody = z.strictObject({ priority: z.enum(USER_LEVELS).nullable() });

/**
 * `/api/v1/queue`: the whole queue at a glance, and switching mode, pausing or the limits. Each
 * change is one activity-log entry, as the dashboard records it (`queue.mode`, `queue.pause` /
 * `queue.resume`, `queue.limits`).
 */
export function queueRoutes(
  app: FastifyInstance,
  deps: { queue: QueueService; audit: AuditLog; accounts: AccountService },
): void {
  const { queue, audit, accounts } = deps;
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

  /** A participant's own level: all their jobs, waiting now and queued later (`user.priority`). */
  app.put('/users/:user/priority', async (request) => {
    const { user } = parse(userParams, request.params);
    const { priority } = parse(userPriorityBody, request.body);
    return audit.audited(callerOf(request), 'user.priority', user, async (d) => {
      Object.assign(d, { via: 'api', to: priority });
      if (!(await accounts.get(user))) throw new AppError('USER_NOT_FOUND', `No user named ${user}.`);
      const r = await queue.setUserLevel(user, priority);
      Object.assign(d, { from: r.from, jobsChanged: r.changed });
      return { user, priority, jobsChanged: r.changed };
    });
  });
}
