import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { AuditLog } from '../admin/audit-log.js';
import { AppError } from '../errors.js';
import type { FileStore } from '../files/file-store.js';
import { checkPrompt } from '../gateway/prompt-check.js';
import { parse } from '../http/parse.js';
import type { QueueService } from '../scheduler/queue-service.js';
import type { AccountService } from '../auth/account-service.js';
import type { ComfyPromptErrorBody } from '../comfy/protocol.js';
import type { Job, JobStatus } from '../store/types.js';
import { jobView } from './job-view.js';
import { createJobBody, jobIdParams, listJobsQuery, patchJobBody } from './schemas.js';
import { jobBodyWithApiPrompt, type WorkflowPromptDeps } from './workflow-prompt.js';

export interface JobsRoutesDeps extends WorkflowPromptDeps {
  queue: QueueService;
  accounts: AccountService;
  files: FileStore;
  audit: AuditLog;
}

/**
 * A prompt ComfyUI would refuse. The answer is ComfyUI's own body, exactly as `/<user>/api/prompt`
 * sends it, with this API's error code added to its `error` object.
 */
class PromptRefused extends AppError {
  readonly body: ComfyPromptErrorBody & { error: { code: 'INVALID_PROMPT' } };

  constructor(body: ComfyPromptErrorBody) {
    super('INVALID_PROMPT', body.error.message);
    this.body = { ...body, error: { code: 'INVALID_PROMPT', ...body.error } };
  }
}

/** Who made an `/api/v1` call, for the activity log. */
export function callerOf(request: FastifyRequest): string {
  return request.principal?.name ?? 'unknown';
}

/**
 * `/api/v1/jobs`: submit, inspect, list, cancel and steer jobs. Instructor-only (see app.ts). Every
 * state-changing call is written to the activity log like the dashboard's actions (`via: 'api'`).
 */
export function jobsRoutes(app: FastifyInstance, deps: JobsRoutesDeps): void {
  const { queue, accounts, audit } = deps;

  app.post('/jobs', async (request, reply) => {
    // A UI-format workflow becomes its API prompt first, so everything after sees one format.
    const body = parse(createJobBody, await jobBodyWithApiPrompt(request.body, deps));
    let job: Job;
    try {
      job = await audit.audited(
        callerOf(request),
        'job.submit',
        null,
        async (d) => {
          if (!(await accounts.get(body.user)))
            throw new AppError('USER_NOT_FOUND', `No user named ${body.user}.`);
          // The participant's own /<user>/api/prompt check, so a prompt that cannot run is refused
          // here, with the same body, instead of failing later on a GPU.
          const checked = await checkPrompt(
            { store: queue.store, files: deps.files, workers: deps.workers },
            body.user,
            body.prompt,
          );
          if (!checked.ok) throw new PromptRefused(checked.body);
          const queued = await queue.enqueue({
            user: body.user,
            prompt: checked.prompt,
            priority: body.priority ?? 'normal',
            front: body.front ?? false,
            metadata: {
              ...body.metadata,
              outputs_to_execute: checked.outputs,
              submittedBy: request.principal?.name,
            },
          });
          Object.assign(d, { number: queued.seq, priority: queued.priority, front: queued.front > 0 });
          return queued;
        },
        { via: 'api', user: body.user },
      );
    } catch (err) {
      if (!(err instanceof PromptRefused)) throw err;
      return reply.status(err.status).type('application/json; charset=utf-8').send(err.body);
    }
    return reply.status(201).send(jobView(job, { position: await queue.positionOf(job.id) }));
  });

  app.get('/jobs/:id', async (request) => {
    const { id } = parse(jobIdParams, request.params);
    const job = await queue.store.getJob(id);
    if (!job) throw new AppError('JOB_NOT_FOUND', `No job with id ${id}.`);
    const position = job.status === 'pending' ? await queue.positionOf(id) : null;
    return jobView(job, { position, withPrompt: true });
  });

  app.get('/jobs', async (request) => {
    const q = parse(listJobsQuery, request.query);
    const page = await queue.store.listJobs({
      ...(q.user ? { user: q.user } : {}),
      ...(q.status ? { status: q.status as JobStatus[] } : {}),
      limit: q.limit,
      order: q.order,
      ...(q.cursor ? { cursor: q.cursor } : {}),
    });
    return { jobs: page.jobs.map((j) => jobView(j)), nextCursor: page.nextCursor };
  });

  app.delete('/jobs/:id', async (request) => {
    const { id } = parse(jobIdParams, request.params);
    const by = callerOf(request);
    return audit.audited(by, 'job.cancel', id, async (d) => {
      await describeJob(d, id);
      return jobView(await queue.cancel(id));
    });
  });

  // One activity-log entry per change, as the dashboard records them.
  app.patch('/jobs/:id', async (request) => {
    const { id } = parse(jobIdParams, request.params);
    const body = parse(patchJobBody, request.body);
    const by = callerOf(request);
    let job: Job | null = null;
    if (body.priority !== undefined) {
      const priority = body.priority;
      job = await audit.audited(by, 'job.priority', id, async (d) => {
        const before = await describeJob(d, id);
        if (before) d.from = before.priority;
        d.to = priority;
        return queue.update(id, { priority });
      });
    }
    if (body.front) {
      job = await audit.audited(by, 'job.front', id, async (d) => {
        await describeJob(d, id);
        return queue.update(id, { front: true });
      });
    }
    const position = job!.status === 'pending' ? await queue.positionOf(id) : null;
    return jobView(job!, { position });
  });

  /** The job's owner and number in the audit details (as the dashboard's actions record them). */
  async function describeJob(d: Record<string, unknown>, id: string): Promise<Job | null> {
    d.via = 'api';
    const before = await queue.store.getJob(id);
    if (before) Object.assign(d, { user: before.user, number: before.seq, was: before.status });
    return before;
  }
}
