import type { FastifyInstance } from 'fastify';
import { AppError } from '../errors.js';
import { parse } from '../http/parse.js';
import type { QueueService } from '../scheduler/queue-service.js';
import type { AccountService } from '../auth/account-service.js';
import type { JobStatus } from '../store/types.js';
import { jobView } from './job-view.js';
import { createJobBody, jobIdParams, listJobsQuery, patchJobBody } from './schemas.js';
import { jobBodyWithApiPrompt, refuseMissingModels, type WorkflowPromptDeps } from './workflow-prompt.js';

export interface JobsRoutesDeps extends WorkflowPromptDeps {
  queue: QueueService;
  accounts: AccountService;
}

/** `/api/v1/jobs`: submit, inspect, list, cancel and steer jobs. Instructor-only (see app.ts). */
export function jobsRoutes(app: FastifyInstance, deps: JobsRoutesDeps): void {
  const { queue, accounts } = deps;

  app.post('/jobs', async (request, reply) => {
    // A UI-format workflow becomes its API prompt first, so everything after sees one format.
    const body = parse(createJobBody, await jobBodyWithApiPrompt(request.body, deps));
    if (!(await accounts.get(body.user))) throw new AppError('USER_NOT_FOUND', `No user named ${body.user}.`);
    await refuseMissingModels(body.prompt, deps);
    const job = await queue.enqueue({
      user: body.user,
      prompt: body.prompt,
      priority: body.priority ?? 'normal',
      front: body.front ?? false,
      metadata: { ...body.metadata, submittedBy: request.principal?.name },
    });
    const position = await queue.positionOf(job.id);
    return reply.status(201).send(jobView(job, { position }));
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
    return jobView(await queue.cancel(id));
  });

  app.patch('/jobs/:id', async (request) => {
    const { id } = parse(jobIdParams, request.params);
    const body = parse(patchJobBody, request.body);
    const job = await queue.update(id, body);
    const position = job.status === 'pending' ? await queue.positionOf(id) : null;
    return jobView(job, { position });
  });
}
