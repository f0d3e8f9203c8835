import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { AuditLog } from '../admin/audit-log.js';
import { AppError } from '../errors.js';
import { parse } from '../http/parse.js';
import type { WorkerView } from './worker-registry.js';

/** What the routes need: the merged worker list and the commands (src/cluster). */
interface WorkersRoutesDeps {
  workerDirectory: { list(): WorkerView[]; view(id: string): WorkerView | null };
  workerCommands: { drain(workerId: string, draining: boolean): Promise<WorkerView> };
  audit: AuditLog;
}

const idParams = z.object({ id: z.string().min(1).max(200) });
const drainBody = z.strictObject({ draining: z.boolean().optional() });

/**
 * `/api/v1/workers` (instructor-only, mounted in the /api/v1 plugin):
 * - `GET /workers` → `{workers: WorkerView[]}` (offline workers stay listed for a while).
 * - `GET /workers/:id` → one WorkerView.
 * - `POST /workers/:id/drain` `{draining?: boolean}` (default true) → the WorkerView. A draining
 *   worker gets no new jobs and finishes what it holds; `{draining: false}` undrains it.
 * With several control-plane processes the list holds every process's workers (`process` says
 * which one holds the connection) and a drain runs on that process; the answer is its result.
 */
export function workersRoutes(app: FastifyInstance, deps: WorkersRoutesDeps): void {
  app.get('/workers', () => ({ workers: deps.workerDirectory.list() }));

  app.get('/workers/:id', (request) => {
    const { id } = parse(idParams, request.params);
    const view = deps.workerDirectory.view(id);
    if (!view) throw new AppError('WORKER_NOT_FOUND', `No worker with id ${id}.`);
    return view;
  });

  app.post('/workers/:id/drain', (request) => {
    const { id } = parse(idParams, request.params);
    const body = parse(drainBody, request.body ?? {});
    const draining = body.draining ?? true;
    const by = request.principal?.name ?? 'unknown';
    // Audited like the dashboard's Drain.
    return deps.audit.audited(by, draining ? 'worker.drain' : 'worker.undrain', id, async (d) => {
      d.via = 'api';
      const view = await deps.workerCommands.drain(id, draining);
      d.name = view.name;
      request.log.info({ by, workerId: id, draining: view.draining }, 'worker drain changed');
      return view;
    });
  });
}
