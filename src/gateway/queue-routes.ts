import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { AppError, QueueLimitError } from '../errors.js';
import { apiPromptSchema } from '../api/schemas.js';
import { validatePrompt } from '../comfy/validate-prompt.js';
import { missingModelsError } from '../comfy/model-requirements.js';
import type { ObjectInfo } from '../comfy/protocol.js';
import { safeRelativePath, userFileKey } from '../files/safe-path.js';
import type { ComfyPrompt, Job, JobStatus, JobStore } from '../store/types.js';
import { isInstructor } from './access.js';
import type { GatewayDeps } from './deps.js';
import { currentEnv } from './environment.js';
import { knownModelHolders, objectInfoOfAllWorkers } from '../dispatch/known-models.js';
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

/** ComfyUI's `execution.SENSITIVE_EXTRA_DATA_KEYS`: never stored, never shown back. */
const SENSITIVE_EXTRA_DATA_KEYS = ['auth_token_comfy_org', 'api_key_comfy_org'];
/** Loader nodes whose file inputs ComfyUI checks for existence while validating. */
const FILE_LOADERS = new Set([
  'LoadImage',
  'LoadImageMask',
  'LoadImageOutput',
  'LoadAudio',
  'LoadVideo',
  'LoadLatent',
]);
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

/** `folder_paths.exists_annotated_filepath` over the user's own input/output/temp files. */
async function fileChecker(
  deps: GatewayDeps,
  user: string,
  prompt: unknown,
): Promise<((name: string) => boolean) | undefined> {
  if (!isObject(prompt)) return undefined;
  const needed = Object.values(prompt).some(
    (n) => isObject(n) && typeof n.class_type === 'string' && FILE_LOADERS.has(n.class_type),
  );
  if (!needed) return undefined;
  const sets = new Map<string, Set<string>>();
  for (const area of ['input', 'output', 'temp'] as const) {
    const prefix = `${userFileKey(user, area)}/`;
    sets.set(area, new Set((await deps.files.list(prefix)).map((f) => f.key.slice(prefix.length))));
  }
  return (name: string) => {
    const m = /^(.*) \[(input|output|temp)\]$/.exec(name);
    const area = m ? m[2]! : 'input';
    try {
      return sets.get(area)!.has(safeRelativePath(m ? m[1]! : name));
    } catch {
      return false;
    }
  };
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

      let prompt: ComfyPrompt;
      let outputs: string[] = [];
      let nodeErrors: Record<string, unknown> = {};
      const env = await currentEnv(store);
      if (env) {
        const exists = await fileChecker(deps, user, body.prompt);
        // Loader combos list every known worker's files, and a file no worker has is refused
        // here, in ComfyUI's words, rather than after the job reached a GPU.
        const holders = await knownModelHolders(store, deps.workers);
        const objectInfo = objectInfoOfAllWorkers(env.objectInfo as ObjectInfo, holders);
        const result = validatePrompt(body.prompt, objectInfo, {
          partialExecutionTargets: partial,
          ...(exists ? { inputFileExists: exists } : {}),
        });
        if (!result.ok) return sendPromptError(reply, result.status, result.body);
        const missing = missingModelsError(result.prompt, holders, { objectInfo, outputs: result.outputs });
        if (missing) return sendPromptError(reply, 400, missing);
        prompt = result.prompt;
        outputs = result.outputs;
        nodeErrors = result.nodeErrors;
      } else {
        // No worker ever described its ComfyUI: check the shape only; the worker validates later.
        if (body.prompt === undefined)
          return sendPromptError(
            reply,
            400,
            comfyPromptError('no_prompt', 'No prompt provided', 'No prompt provided'),
          );
        const r = apiPromptSchema.safeParse(body.prompt);
        if (!r.success) {
          return sendPromptError(
            reply,
            400,
            comfyPromptError(
              'invalid_prompt',
              'Invalid prompt',
              r.error.issues[0]?.message ?? 'The prompt is malformed.',
            ),
          );
        }
        prompt = r.data as ComfyPrompt;
      }

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

  both(app, 'GET', '/queue', async (request) => {
    const user = userOf(request);
    const [running, pending] = await Promise.all([
      store.listJobs({ user, status: 'running', limit: 500, order: 'asc' }),
      store.listJobs({ user, status: 'pending', limit: 500, order: 'asc' }),
    ]);
    return { queue_running: running.jobs.map(queueTuple), queue_pending: pending.jobs.map(queueTuple) };
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
    if (target) {
      const job = await ownJob(store, user, target);
      if (job?.status === 'running') await tryCancel(deps, job);
    } else {
      // ComfyUI's global interrupt stops "the" running prompt: here, this user's own.
      for (const job of (await store.listJobs({ user, status: 'running', limit: 500 })).jobs)
        await tryCancel(deps, job);
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
    // ComfyUI keeps history in completion order, oldest first.
    const jobs = (await userJobs(store, user, TERMINAL)).filter(inHistory);
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
    const job = await ownJob(store, userOf(request), promptId);
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

    const jobs = (await userJobs(store, user, [...new Set(storeStatusesOf(statuses))])).filter(
      (j) => j.status === 'pending' || j.status === 'running' || inHistory(j),
    );
    let items = jobs.map((j) => jobItem(j));
    if (workflowId) items = items.filter((i) => i.workflow_id === workflowId);
    const key =
      sortBy === 'execution_duration'
        ? (i: Record<string, unknown>) => {
            const s = i.execution_start_time as number | undefined;
            const e = i.execution_end_time as number | undefined;
            return s && e ? e - s : 0;
          }
        : (i: Record<string, unknown>) => (i.create_time as number) ?? 0;
    items.sort((a, b) => (sortOrder === 'desc' ? key(b) - key(a) : key(a) - key(b)));
    const total = items.length;
    const page = items.slice(offset, limit === null ? undefined : offset + limit);
    return { jobs: page, pagination: { offset, limit, total, has_more: offset + page.length < total } };
  });

  both(app, 'GET', '/jobs/:jobId', async (request, reply) => {
    const { jobId } = request.params as { jobId: string };
    const job = await ownJob(store, userOf(request), jobId);
    if (!job || !(job.status === 'pending' || job.status === 'running' || inHistory(job))) {
      return reply.status(404).send({ error: 'Job not found' });
    }
    return jobItem(job, true);
  });

  const cancelOwn = async (user: string, id: string): Promise<boolean> => {
    const job = await ownJob(store, user, id);
    if (!job || (job.status !== 'pending' && job.status !== 'running')) return false;
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
