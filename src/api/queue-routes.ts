import type { FastifyInstance } from 'fastify';
import { parse } from '../http/parse.js';
import type { QueueService } from '../scheduler/queue-service.js';
import { putQueueBody } from './schemas.js';

/** `/api/v1/queue`: the whole queue at a glance, and switching mode or pausing. */
export function queueRoutes(app: FastifyInstance, deps: { queue: QueueService }): void {
  app.get('/queue', () => deps.queue.snapshot());

  app.put('/queue', async (request) => {
    const body = parse(putQueueBody, request.body);
    request.log.info({ by: request.principal?.name, change: body }, 'queue settings changed');
    await deps.queue.updateSettings(body);
    return deps.queue.snapshot();
  });
}
