/**
 * What the participants' `/ws` hub (ws-hub.ts) knows live about one job, and the ComfyUI ending it
 * makes up for a job whose worker let it go without relaying one. Kept apart from the hub because
 * the made-up ending is plain data built from the job and its live state: the hub decides when to
 * send it (timers, ordering, sockets), this module only what it says.
 */
import type { Job } from '../store/types.js';
import { historyOutputs } from './history-shape.js';

/** What we know live about a job, to route its events and replay them after a page refresh. */
export interface LiveJob {
  jobId: string;
  user: string;
  clientId: string | null;
  started: boolean;
  terminal: boolean;
  executing: Record<string, unknown> | null;
  progress: Record<string, unknown> | null;
  progressState: Record<string, unknown> | null;
  expires: number | null;
  /** The worker holding this attempt let it go (`worker_done`): no more of its events will come. */
  workerDone: boolean;
  /** Ended in the store while the worker may still send ComfyUI's own ending: the job as it ended. */
  awaitingEnd: Job | null;
  /** The ending the owner saw was made up here: the worker's own, should it still come, is dropped. */
  madeUp: boolean;
  fallback: NodeJS.Timeout | null;
}

export function newLiveJob(jobId: string, user: string, clientId: string | null): LiveJob {
  return {
    jobId,
    user,
    clientId,
    started: false,
    terminal: false,
    executing: null,
    progress: null,
    progressState: null,
    expires: null,
    workerDone: false,
    awaitingEnd: null,
    madeUp: false,
    fallback: null,
  };
}

/**
 * The events ComfyUI would have sent to end `job`, in order, given what the owner already saw of it
 * (`l`): a start if it never started, the outputs of a completed job the owner never saw run, the
 * verdict, and the final `executing` with no node.
 */
export function madeUpEnding(job: Job, l: LiveJob, now: number): { type: string; data: unknown }[] {
  const id = job.id;
  const out: { type: string; data: unknown }[] = [];
  if (!l.started)
    out.push({ type: 'execution_start', data: { prompt_id: id, timestamp: job.startedAt ?? now } });
  if (job.status === 'completed') {
    if (!l.started) {
      for (const [node, output] of Object.entries(historyOutputs(job))) {
        out.push({ type: 'executed', data: { node, display_node: node, output, prompt_id: id } });
      }
    }
    out.push({ type: 'execution_success', data: { prompt_id: id, timestamp: job.finishedAt ?? now } });
  } else if (job.status === 'failed') {
    const e = job.error;
    out.push({
      type: 'execution_error',
      data: {
        prompt_id: id,
        node_id: e?.nodeId ?? '',
        node_type: e?.nodeType ?? '',
        executed: [],
        exception_message: e?.message ?? 'The job failed.',
        exception_type: e?.exceptionType ?? e?.reason ?? 'Error',
        traceback: e?.traceback ?? [],
        current_inputs: {},
        current_outputs: [],
        timestamp: job.finishedAt ?? now,
      },
    });
  } else {
    const node = typeof l.executing?.node === 'string' ? l.executing.node : '';
    out.push({
      type: 'execution_interrupted',
      data: { prompt_id: id, node_id: node, node_type: '', executed: [], timestamp: job.finishedAt ?? now },
    });
  }
  out.push({ type: 'executing', data: { node: null, prompt_id: id } });
  return out;
}
