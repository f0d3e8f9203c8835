import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { AppError, QueueLimitError } from '../errors.js';
import type { Job, JobStatus, JobStore } from '../store/types.js';
import { isInstructor } from './access.js';
import type { GatewayDeps } from './deps.js';
import {
  both,
  comfyPromptError,
  emptyOk,
  isObject,
  jsonBody,
  jsonBodyOrEmpty,
  q,
  userOf,
} from './http-util.js';
import {
  COMFY_JOB_STATUSES,
  type ComfyJobStatus,
  historyEntry,
  inHistory,
  jobItem,
  queueTuple,
  storeStatusesOf,
} from './history-shape.js';
import { checkPrompt } from './prompt-check.js';
import { sentAheadJobs } from '../dispatch/worker-registry.js';
import type { EarlyEnding } from '../dispatch/outputs-in-flight.js';

/** ComfyUI's `execution.SENSITIVE_EXTRA_DATA_KEYS`: never stored, never shown back. */
const SENSITIVE_EXTRA_DATA_KEYS = ['auth_token_comfy_org', 'api_key_comfy_org'];
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** Most of one user's jobs read for a history or jobs listing. */
const MAX_SCAN = 5000;
const TERMINAL: JobStatus[] = ['completed', 'failed', 'cancelled'];

/** All of a user's jobs in the given statuses, newest first, at most {@link MAX_SCAN}. */
export async function userJobs(
  store: JobStore,
  user: string,
  status: JobStatus[],
  order: 'asc' | 'desc' = 'desc',
): Promise<Job[]> {
  const out: Job[] = [];
  let cursor: string | undefined;
  do {
    const page = await store.listJobs({ user, status, limit: 500, order, ...(cursor ? { cursor } : {}) });
    out.push(...page.jobs);
    cursor = page.nextCursor ?? undefined;
  } while (cursor && out.length < MAX_SCAN);
  return out;
}

/** The user's own job, or null (another user's job looks exactly like a missing one). */
async function ownJob(store: JobStore, user: string, id: unknown): Promise<Job | null> {
  if (typeof id !== 'string' || id.length === 0 || id.length > 128) return null;
  const job = await store.getJob(id);
  return job && job.user === user ? job : null;
}

async function tryCancel(deps: GatewayDeps, job: Job): Promise<boolean> {
  try {
    await deps.queue.cancel(job.id);
    return true;
  } catch (err) {
    if (err instanceof AppError && (err.code === 'JOB_FINISHED' || err.code === 'JOB_NOT_FOUND'))
      return false;
    throw err;
  }
}

/**
 * The job as ComfyUI would show it: completed, with the outputs its `executed` events named, from
 * the moment ComfyUI said success, though the record (which follows the uploads) is still to come
 * (see outputs-in-flight.ts). Read the ending before the job: a record landing in between then
 * shows as itself, never as a job gone back to running.
 */
function asSeen(job: Job, ending: EarlyEnding | undefined): Job {
  if (!ending || ending.jobId !== job.id || job.status !== 'running' || job.attempts !== ending.attempt)
    return job;
  return { ...job, status: 'completed', finishedAt: ending.at, outputs: [...ending.outputs] };
}

function sendPromptError(reply: FastifyReply, status: number, body: unknown): FastifyReply {
  return reply.status(status).type('application/json; charset=utf-8').send(body);
}

/**
 * `prompt`, `queue`, `interrupt`, `history` and `jobs`: ComfyUI's queue API over the central
 * queue, each participant seeing and touching only their own jobs.
 */
export function queueRoutes(app: FastifyInstance, deps: GatewayDeps): void {
  const { store, queue } = deps;

  const remaining = async (user: string) => {
    const c = await store.countByStatus(user);
    return { exec_info: { queue_remaining: c.pending + c.running } };
  };

  both(app, 'GET', '/prompt', async (request) => remaining(userOf(request)));

  both(
    app,
    'POST',
    '/prompt',
    async (request: FastifyRequest, reply: FastifyReply) => {
      const user = userOf(request);
      let body: unknown;
      try {
        body = jsonBody(request);
      } catch (err) {
        const details = err instanceof AppError ? err.message : 'The request body is not valid JSON.';
        return sendPromptError(reply, 400, comfyPromptError('invalid_json', 'Invalid request', details));
      }
      if (!isObject(body)) {
        return sendPromptError(
          reply,
          400,
          comfyPromptError('invalid_prompt', 'Invalid request', 'The request body must be a JSON object.'),
        );
      }

      let id: string | undefined;
      if (body.prompt_id !== undefined && body.prompt_id !== null) {
        if (typeof body.prompt_id !== 'string' || !UUID_RE.test(body.prompt_id)) {
          return sendPromptError(
            reply,
            400,
            comfyPromptError(
              'invalid_prompt_id',
              'prompt_id must be a valid UUID',
              'prompt_id must be a UUID string in canonical lowercase hyphenated form; omit it to let the server generate one',
            ),
          );
        }
        id = body.prompt_id;
      }
      const pet = body.partial_execution_targets;
      const partial =
        Array.isArray(pet) && pet.every((x) => typeof x === 'string') ? (pet as string[]) : null;

      const checked = await checkPrompt(deps, user, body.prompt, partial);
      if (!checked.ok) return sendPromptError(reply, checked.status, checked.body);
      const { prompt, outputs, nodeErrors } = checked;

      const extra: Record<string, unknown> = isObject(body.extra_data) ? { ...body.extra_data } : {};
      for (const k of SENSITIVE_EXTRA_DATA_KEYS) delete extra[k];
      extra.create_time = deps.clock();
      const principal = request.principal!;
      const metadata: Record<string, unknown> = {
        extra_data: extra,
        outputs_to_execute: outputs,
        submittedBy: principal.name,
      };
      if (typeof body.client_id === 'string' && body.client_id !== '')
        metadata.client_id = body.client_id.slice(0, 200);
      if (typeof body.number === 'number') metadata.number = body.number;
      if (partial) metadata.partial_execution_targets = partial;

      try {
        const job = await queue.enqueue({
          ...(id ? { id } : {}),
          user,
          prompt,
          priority: isInstructor(request) && principal.name === user ? 'instructor' : 'normal',
          front: body.front === true && isInstructor(request),
          metadata,
        });
        return { prompt_id: job.id, number: job.seq, node_errors: nodeErrors };
      } catch (err) {
        if (err instanceof QueueLimitError) {
          reply.header('retry-after', String(err.retryAfter ?? 10));
          return sendPromptError(
            reply,
            429,
            comfyPromptError('queue_limit', 'Queue limit reached', err.message, err.details ?? {}),
          );
        }
        if (err instanceof AppError && err.code === 'CONFLICT') {
          return sendPromptError(
            reply,
            400,
            comfyPromptError(
              'invalid_prompt_id',
              'prompt_id is already in use',
              'Omit prompt_id to let the server generate one.',
            ),
          );
        }
        throw err;
      }
    },
    { bodyLimit: deps.config.BODY_LIMIT },
  );

  /** The user's jobs sent ahead to a GPU that ComfyUI has not started: shown pending, not running. */
  const sentAhead = (user: string): ReadonlySet<string> =>
    new Set(sentAheadJobs(deps.workers?.online() ?? [], user).keys());

  /** The user's jobs whose success is announced and not recorded yet, by id. */
  const endings = (user: string): Map<string, EarlyEnding> =>
    new Map((deps.inFlight?.endingsOf(user) ?? []).map((e) => [e.jobId, e]));

  both(app, 'GET', '/queue', async (request) => {
    const user = userOf(request);
    const ended = endings(user);
    const [running, pending] = await Promise.all([
      store.listJobs({ user, status: 'running', limit: 500, order: 'asc' }),
      store.listJobs({ user, status: 'pending', limit: 500, order: 'asc' }),
    ]);
    const ahead = sentAhead(user);
    const next = running.jobs.filter((j) => ahead.has(j.id));
    return {
      // ComfyUI takes a prompt off its queue as it writes its history (see asSeen).
      queue_running: running.jobs
        .filter((j) => !ahead.has(j.id) && asSeen(j, ended.get(j.id)) === j)
        .map(queueTuple),
      // Sent ahead first: they start before anything still in the central queue.
      queue_pending: [...next, ...pending.jobs].map(queueTuple),
    };
  });

  both(app, 'POST', '/queue', async (request, reply) => {
    const user = userOf(request);
    const body = jsonBody(request);
    if (!isObject(body))
      throw new AppError('VALIDATION_FAILED', 'Expected {"clear": true} and/or {"delete": [prompt ids]}.');
    if (body.clear === true) {
      for (const job of await userJobs(store, user, ['pending'])) await tryCancel(deps, job);
    }
    if (body.delete !== undefined) {
      if (!Array.isArray(body.delete))
        throw new AppError('VALIDATION_FAILED', '"delete" must be a list of prompt ids.');
      for (const id of body.delete.slice(0, 1000)) {
        const job = await ownJob(store, user, id);
        // ComfyUI deletes from the pending queue only; the running prompt needs /interrupt.
        if (job?.status === 'pending') await tryCancel(deps, job);
      }
    }
    return emptyOk(reply);
  });

  both(app, 'POST', '/interrupt', async (request, reply) => {
    const user = userOf(request);
    const body = jsonBodyOrEmpty(request);
    const target = isObject(body) ? body.prompt_id : undefined;
    // A job ComfyUI finished (its outputs still on their way, see asSeen) is done, as in ComfyUI:
    // an interrupt does not touch it.
    const ended = endings(user);
    if (target) {
      const job = await ownJob(store, user, target);
      if (job?.status === 'running' && asSeen(job, ended.get(job.id)) === job) await tryCancel(deps, job);
    } else {
      // ComfyUI's global interrupt stops "the" running prompt: here, this user's own.
      for (const job of (await store.listJobs({ user, status: 'running', limit: 500 })).jobs)
        if (asSeen(job, ended.get(job.id)) === job) await tryCancel(deps, job);
    }
    return emptyOk(reply);
  });

  // ---- history -----------------------------------------------------------------------------

  both(app, 'GET', '/history', async (request) => {
    const user = userOf(request);
    const maxRaw = q(request, 'max_items');
    const offRaw = q(request, 'offset');
    const maxItems = maxRaw === undefined ? null : Number.parseInt(maxRaw, 10);
    let offset = offRaw === undefined ? -1 : Number.parseInt(offRaw, 10);
    if ((maxItems !== null && !Number.isFinite(maxItems)) || !Number.isFinite(offset)) {
      throw new AppError('VALIDATION_FAILED', 'max_items and offset must be integers.');
    }
    const ended = endings(user);
    // ComfyUI keeps history in completion order, oldest first.
    const jobs = (await userJobs(store, user, TERMINAL)).filter(inHistory);
    for (const e of ended.values()) {
      const job = await ownJob(store, user, e.jobId);
      const seen = job && asSeen(job, e);
      // Shown early, or recorded since the list above was read: either way, in the history once.
      if (seen && inHistory(seen) && !jobs.some((j) => j.id === seen.id)) jobs.push(seen);
    }
    jobs.sort((a, b) => (a.finishedAt ?? 0) - (b.finishedAt ?? 0) || a.seq - b.seq);
    if (offset < 0 && maxItems !== null) offset = jobs.length - maxItems;
    const out: Record<string, unknown> = {};
    let n = 0;
    for (let i = Math.max(0, offset); i < jobs.length; i++) {
      if (maxItems !== null && n >= maxItems) break;
      const job = jobs[i]!;
      out[job.id] = historyEntry(job);
      n++;
    }
    return out;
  });

  both(app, 'GET', '/history/:promptId', async (request) => {
    const { promptId } = request.params as { promptId: string };
    const ending = deps.inFlight?.endingOf(promptId);
    const found = await ownJob(store, userOf(request), promptId);
    const job = found && asSeen(found, ending);
    return job && inHistory(job) ? { [job.id]: historyEntry(job) } : {};
  });

  both(app, 'POST', '/history', async (request, reply) => {
    const user = userOf(request);
    const body = jsonBody(request);
    if (!isObject(body))
      throw new AppError('VALIDATION_FAILED', 'Expected {"clear": true} and/or {"delete": [prompt ids]}.');
    if (body.clear === true) await store.deleteHistory(user);
    if (body.delete !== undefined) {
      if (!Array.isArray(body.delete))
        throw new AppError('VALIDATION_FAILED', '"delete" must be a list of prompt ids.');
      const ids = body.delete.filter((x): x is string => typeof x === 'string').slice(0, 1000);
      if (ids.length) await store.deleteHistory(user, ids);
    }
    return emptyOk(reply);
  });

  // ---- /api/jobs (ComfyUI v0.6+, what the current frontend reads) -----------------------------

  both(app, 'GET', '/jobs', async (request, reply) => {
    const user = userOf(request);
    const bad = (error: string) => reply.status(400).send({ error });
    const statusParam = q(request, 'status');
    let statuses: ComfyJobStatus[] = [...COMFY_JOB_STATUSES];
    if (statusParam) {
      const wanted = statusParam
        .split(',')
        .map((s) => s.trim().toLowerCase())
        .filter(Boolean);
      const invalid = wanted.filter((s) => !(COMFY_JOB_STATUSES as readonly string[]).includes(s));
      if (invalid.length)
        return bad(
          `Invalid status value(s): ${invalid.join(', ')}. Valid values: ${COMFY_JOB_STATUSES.join(', ')}`,
        );
      statuses = wanted as ComfyJobStatus[];
    }
    const sortBy = (q(request, 'sort_by') ?? 'created_at').toLowerCase();
    const sortOrder = (q(request, 'sort_order') ?? 'desc').toLowerCase();
    if (sortBy !== 'created_at' && sortBy !== 'execution_duration')
      return bad("sort_by must be 'created_at' or 'execution_duration'");
    if (sortOrder !== 'asc' && sortOrder !== 'desc') return bad("sort_order must be 'asc' or 'desc'");
    let limit: number | null = null;
    const limitRaw = q(request, 'limit');
    if (limitRaw !== undefined) {
      if (!/^-?\d+$/.test(limitRaw.trim())) return bad('limit must be an integer');
      limit = Number.parseInt(limitRaw, 10);
      if (limit <= 0) return bad('limit must be a positive integer');
    }
    let offset = 0;
    const offsetRaw = q(request, 'offset');
    if (offsetRaw !== undefined) {
      if (!/^-?\d+$/.test(offsetRaw.trim())) return bad('offset must be an integer');
      offset = Math.max(0, Number.parseInt(offsetRaw, 10));
    }
    const workflowId = q(request, 'workflow_id');

    // A job sent ahead is `pending` to ComfyUI's eyes until ComfyUI starts it.
    const ahead = sentAhead(user);
    const ended = endings(user);
    const wanted = new Set(storeStatusesOf(statuses));
    if (wanted.has('pending') || (wanted.has('completed') && ended.size > 0)) wanted.add('running');
    const jobs = (await userJobs(store, user, [...wanted]))
      .map((j) => asSeen(j, ended.get(j.id)))
      .filter((j) => j.status === 'pending' || j.status === 'running' || inHistory(j));
    let rows = jobs
      .map((j) => ({ seq: j.seq, item: jobItem(j, false, ahead.has(j.id)) }))
      .filter((r) => statuses.includes(r.item.status as ComfyJobStatus));
    if (workflowId) rows = rows.filter((r) => r.item.workflow_id === workflowId);
    const key =
      sortBy === 'execution_duration'
        ? (i: Record<string, unknown>) => {
            const s = i.execution_start_time as number | undefined;
            const e = i.execution_end_time as number | undefined;
            return s && e ? e - s : 0;
          }
        : (i: Record<string, unknown>) => (i.create_time as number) ?? 0;
    // Jobs queued in the same millisecond keep their queue order either way, as in ComfyUI (whose
    // stable sort keeps its list's order, queue order, for equal times).
    const sign = sortOrder === 'desc' ? -1 : 1;
    rows.sort((a, b) => sign * (key(a.item) - key(b.item)) || a.seq - b.seq);
    const items = rows.map((r) => r.item);
    const total = items.length;
    const page = items.slice(offset, limit === null ? undefined : offset + limit);
    return { jobs: page, pagination: { offset, limit, total, has_more: offset + page.length < total } };
  });

  both(app, 'GET', '/jobs/:jobId', async (request, reply) => {
    const { jobId } = request.params as { jobId: string };
    const ending = deps.inFlight?.endingOf(jobId);
    const found = await ownJob(store, userOf(request), jobId);
    const job = found && asSeen(found, ending);
    if (!job || !(job.status === 'pending' || job.status === 'running' || inHistory(job))) {
      return reply.status(404).send({ error: 'Job not found' });
    }
    return jobItem(job, true, sentAhead(userOf(request)).has(job.id));
  });

  const cancelOwn = async (user: string, id: string): Promise<boolean> => {
    const ending = deps.inFlight?.endingOf(id);
    const job = await ownJob(store, user, id);
    if (!job || (job.status !== 'pending' && job.status !== 'running')) return false;
    // Shown completed already (its outputs on their way): done, as in ComfyUI.
    if (asSeen(job, ending) !== job) return false;
    return tryCancel(deps, job);
  };

  both(app, 'POST', '/jobs/:jobId/cancel', async (request) => {
    const { jobId } = request.params as { jobId: string };
    return { cancelled: await cancelOwn(userOf(request), jobId) };
  });

  both(app, 'POST', '/jobs/cancel', async (request, reply) => {
    let body: unknown;
    try {
      body = jsonBody(request);
    } catch {
      return reply.status(400).send({ error: 'Request body must be valid JSON' });
    }
    const ids = isObject(body) ? body.job_ids : undefined;
    if (!Array.isArray(ids)) return reply.status(400).send({ error: 'job_ids must be a list' });
    const invalid = ids.filter((x) => typeof x !== 'string' || !UUID_RE.test(x));
    if (invalid.length) {
      return reply.status(400).send({
        error: 'job_ids contains invalid id(s)',
        invalid_ids: invalid.map((x) => (typeof x === 'string' ? x : JSON.stringify(x))),
      });
    }
    let cancelled = false;
    for (const id of ids.slice(0, 1000) as string[])
      if (await cancelOwn(userOf(request), id)) cancelled = true;
    return { cancelled };
  });
}
