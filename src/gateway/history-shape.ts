import type { ComfyPrompt, Job, JobStatus } from '../store/types.js';

/**
 * How our jobs look through ComfyUI's eyes: queue tuples, `/history` entries and the v0.6+
 * `/api/jobs` items. A job id is the ComfyUI prompt id; `seq` is ComfyUI's queue `number`.
 */

export type QueueTuple = [number, string, ComfyPrompt, Record<string, unknown>, string[]];

export interface FileItem {
  filename: string;
  subfolder: string;
  type: string;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** ComfyUI's `extra_data` of a job: what the client sent, plus `client_id` and `create_time`. */
export function extraDataOf(job: Job): Record<string, unknown> {
  const m = job.metadata;
  const sent = isRecord(m.extra_data) ? m.extra_data : {};
  const out: Record<string, unknown> = { ...sent };
  if (typeof m.client_id === 'string') out.client_id = m.client_id;
  out.create_time ??= job.createdAt;
  return out;
}

export function clientIdOf(job: Pick<Job, 'metadata'>): string | null {
  const c = job.metadata.client_id;
  return typeof c === 'string' && c !== '' ? c : null;
}

/** The output nodes the prompt runs (validation result stored at enqueue, else from outputs). */
export function outputsToExecute(job: Job): string[] {
  const o = job.metadata.outputs_to_execute;
  if (Array.isArray(o) && o.every((x) => typeof x === 'string')) return o as string[];
  return [...new Set(job.outputs.map((x) => x.nodeId))];
}

export function queueTuple(job: Job): QueueTuple {
  return [job.seq, job.id, job.prompt, extraDataOf(job), outputsToExecute(job)];
}

/**
 * History `outputs`: node id → ui key (`images`, `gifs`, `animated`, `text`, ...) → entries, in
 * report order, exactly as ComfyUI reported them: file items under the names the participant sees
 * (with any further fields, VHS `format`, `frame_rate`, ...), non-file entries as they were.
 */
export function historyOutputs(job: Job): Record<string, Record<string, unknown[]>> {
  const out: Record<string, Record<string, unknown[]>> = {};
  for (const o of job.outputs) {
    const node = (out[o.nodeId] ??= {});
    const item: unknown =
      o.value !== undefined
        ? o.value
        : ({ filename: o.filename, subfolder: o.subfolder, type: o.type, ...o.extra } satisfies FileItem);
    (node[o.kind] ??= []).push(item);
  }
  return out;
}

/** Jobs that ComfyUI would list in its history: finished, except pending prompts deleted unrun. */
export function inHistory(job: Job): boolean {
  if (job.status === 'completed' || job.status === 'failed') return true;
  return job.status === 'cancelled' && job.startedAt !== null;
}

function executionError(job: Job): Record<string, unknown> {
  const e = job.error;
  const details = e?.details ?? {};
  return {
    prompt_id: job.id,
    node_id: e?.nodeId ?? '',
    node_type: e?.nodeType ?? '',
    executed: Array.isArray(details.executed) ? details.executed : [],
    exception_message: e?.message ?? 'The job failed.',
    exception_type: e?.exceptionType ?? e?.reason ?? 'Error',
    traceback: e?.traceback ?? [],
    current_inputs: isRecord(details.current_inputs) ? details.current_inputs : {},
    current_outputs: Array.isArray(details.current_outputs) ? details.current_outputs : [],
    timestamp: job.finishedAt ?? job.createdAt,
  };
}

function interrupted(job: Job): Record<string, unknown> {
  return {
    prompt_id: job.id,
    node_id: job.error?.nodeId ?? '',
    node_type: job.error?.nodeType ?? '',
    executed: [],
    timestamp: job.finishedAt ?? job.createdAt,
  };
}

/** `status.messages` of a history entry, rebuilt from the job's timestamps and error. */
export function statusMessages(job: Job): [string, Record<string, unknown>][] {
  const msgs: [string, Record<string, unknown>][] = [];
  if (job.startedAt !== null) {
    msgs.push(['execution_start', { prompt_id: job.id, timestamp: job.startedAt }]);
    msgs.push(['execution_cached', { nodes: [], prompt_id: job.id, timestamp: job.startedAt }]);
  }
  if (job.status === 'completed')
    msgs.push(['execution_success', { prompt_id: job.id, timestamp: job.finishedAt ?? job.createdAt }]);
  else if (job.status === 'failed') msgs.push(['execution_error', executionError(job)]);
  else if (job.status === 'cancelled') msgs.push(['execution_interrupted', interrupted(job)]);
  return msgs;
}

export function historyStatus(job: Job) {
  const ok = job.status === 'completed';
  return { status_str: ok ? 'success' : 'error', completed: ok, messages: statusMessages(job) };
}

/** One `/history` entry, as ComfyUI's `PromptQueue.get_history` gives it. */
export function historyEntry(job: Job) {
  const outputs = historyOutputs(job);
  const meta: Record<string, unknown> = {};
  if (job.status === 'completed') {
    for (const node of Object.keys(outputs))
      meta[node] = { node_id: node, display_node: node, parent_node: null, real_node_id: node };
  }
  return { prompt: queueTuple(job), outputs, status: historyStatus(job), meta };
}

// ---- /api/jobs (ComfyUI v0.6+) ---------------------------------------------------------------

export type ComfyJobStatus = 'pending' | 'in_progress' | 'completed' | 'failed' | 'cancelled';
export const COMFY_JOB_STATUSES: readonly ComfyJobStatus[] = [
  'pending',
  'in_progress',
  'completed',
  'failed',
  'cancelled',
];

export function comfyStatusOf(status: JobStatus): ComfyJobStatus {
  return status === 'running' ? 'in_progress' : status;
}

/** The store statuses behind ComfyUI job statuses. */
export function storeStatusesOf(statuses: readonly ComfyJobStatus[]): JobStatus[] {
  return statuses.map((s) => (s === 'in_progress' ? 'running' : s));
}

const PREVIEWABLE_KINDS = new Set(['images', 'video', 'audio', '3d', 'text']);
const THREE_D = ['.obj', '.fbx', '.gltf', '.glb', '.usdz'];
const TEXT = ['.txt', '.md', '.json'];

function previewable(kind: string, filename: string): boolean {
  if (PREVIEWABLE_KINDS.has(kind)) return true;
  const f = filename.toLowerCase();
  return [...THREE_D, ...TEXT].some((e) => f.endsWith(e));
}

function isTextPreview(kind: string, filename: string): boolean {
  return kind === 'text' || TEXT.some((e) => filename.toLowerCase().endsWith(e));
}

/** `outputs_count`, `previewable_outputs_count` and `preview_output`, ComfyUI's way. */
function outputsSummary(job: Job) {
  let preview: Record<string, unknown> | null = null;
  let fallback: Record<string, unknown> | null = null;
  let textFallback: Record<string, unknown> | null = null;
  let previewableCount = 0;
  const files = job.outputs.filter((o) => o.value === undefined);
  for (const o of files) {
    if (!previewable(o.kind, o.filename)) continue;
    previewableCount++;
    const item = {
      filename: o.filename,
      subfolder: o.subfolder,
      type: o.type,
      nodeId: o.nodeId,
      mediaType: o.kind,
    };
    if (isTextPreview(o.kind, o.filename)) textFallback ??= item;
    else if (o.type === 'output') preview ??= item;
    else fallback ??= item;
  }
  return {
    outputs_count: files.length,
    previewable_outputs_count: previewableCount,
    preview_output: preview ?? fallback ?? textFallback,
  };
}

function workflowIdOf(job: Job): string | undefined {
  const extra = job.metadata.extra_data;
  const pnginfo = isRecord(extra) ? extra.extra_pnginfo : undefined;
  if (!isRecord(pnginfo) || !isRecord(pnginfo.workflow)) return undefined;
  const id = pnginfo.workflow.id;
  return typeof id === 'string' ? id : undefined;
}

/** Drops null/undefined fields, like ComfyUI's `prune_dict`. */
function prune<T extends Record<string, unknown>>(o: T): Partial<T> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) if (v !== null && v !== undefined) out[k] = v;
  return out as Partial<T>;
}

/**
 * One item of `GET /api/jobs`; `detail` adds what `GET /api/jobs/{id}` carries. A job `sentAhead`
 * (held by a GPU, not started by its ComfyUI) is `pending`, as it is in ComfyUI's own queue.
 */
export function jobItem(job: Job, detail = false, sentAhead = false): Record<string, unknown> {
  const status = sentAhead && job.status === 'running' ? 'pending' : comfyStatusOf(job.status);
  const base = {
    id: job.id,
    status,
    priority: job.seq,
    create_time: job.createdAt,
    workflow_id: workflowIdOf(job),
  };
  if (status === 'pending' || status === 'in_progress') {
    const item: Record<string, unknown> = prune({ ...base, outputs_count: 0, previewable_outputs_count: 0 });
    if (detail) item.workflow = { prompt: job.prompt, extra_data: extraDataOf(job) };
    return item;
  }
  const end = job.finishedAt ?? undefined;
  const item: Record<string, unknown> = prune({
    ...base,
    execution_start_time: job.startedAt ?? undefined,
    execution_end_time: end,
    execution_error: job.status === 'failed' ? executionError(job) : undefined,
    ...outputsSummary(job),
  });
  if (detail) {
    item.outputs = historyOutputs(job);
    item.execution_status = historyStatus(job);
    item.workflow = { prompt: job.prompt, extra_data: extraDataOf(job) };
  }
  return item;
}

/** Event data with every `prompt_id` (top level and per node) set to our job id. */
export function withPromptId(data: Record<string, unknown>, jobId: string): Record<string, unknown> {
  const out: Record<string, unknown> = { ...data };
  if ('prompt_id' in out) out.prompt_id = jobId;
  if (isRecord(out.nodes)) {
    const nodes: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(out.nodes))
      nodes[k] = isRecord(v) && 'prompt_id' in v ? { ...v, prompt_id: jobId } : v;
    out.nodes = nodes;
  }
  return out;
}
