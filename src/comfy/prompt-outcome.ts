/**
 * How a prompt ended on ComfyUI, from its WebSocket messages or its `/history` entry, and the
 * {@link JobError} the queue stores for a failed one.
 */
import type { JobError, JobOutput } from '../store/types.js';
import type { ExecutionErrorData, ExecutionInterruptedData, HistoryEntry } from './protocol.js';
import { ExecutionErrorDataSchema, ExecutionInterruptedDataSchema } from './protocol.js';
import { outputsFromHistory } from './prompt-tools.js';

export type PromptOutcome =
  | { status: 'success'; promptId: string; outputs: JobOutput[]; source: 'socket' | 'history' }
  | { status: 'error'; promptId: string; error: ExecutionErrorData; source: 'socket' | 'history' }
  | {
      status: 'interrupted';
      promptId: string;
      interrupted: ExecutionInterruptedData;
      source: 'socket' | 'history';
    };

/** Drops repeated files (a cached run re-sends `executed`), keeping the first of each. */
export function uniqueOutputs(outputs: JobOutput[]): JobOutput[] {
  const seen = new Set<string>();
  return outputs.filter((o) => {
    if (o.value !== undefined) return true; // a non-file entry: each has its own place
    const key = `${o.nodeId}\u0000${o.type}\u0000${o.subfolder}\u0000${o.filename}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

/**
 * The outcome a finished prompt's history entry records. ComfyUI writes the entry only when the
 * prompt has finished, so any entry is final; an `error` status without a recorded
 * `execution_error` / `execution_interrupted` message is reported as an error of unknown node.
 */
export function outcomeFromHistory(promptId: string, entry: HistoryEntry): PromptOutcome {
  const status = entry.status;
  if (!status || status.status_str === 'success') {
    return {
      status: 'success',
      promptId,
      outputs: uniqueOutputs(outputsFromHistory(entry)),
      source: 'history',
    };
  }
  for (const [type, data] of status.messages) {
    if (type === 'execution_error') {
      const parsed = ExecutionErrorDataSchema.safeParse(data);
      if (parsed.success) return { status: 'error', promptId, error: parsed.data, source: 'history' };
    }
    if (type === 'execution_interrupted') {
      const parsed = ExecutionInterruptedDataSchema.safeParse(data);
      if (parsed.success)
        return { status: 'interrupted', promptId, interrupted: parsed.data, source: 'history' };
    }
  }
  return {
    status: 'error',
    promptId,
    error: {
      prompt_id: promptId,
      node_id: '',
      node_type: '',
      executed: [],
      exception_message: `ComfyUI recorded status "${status.status_str}" without an error message`,
      exception_type: '',
      traceback: [],
      current_inputs: {},
      current_outputs: [],
    },
    source: 'history',
  };
}

/** The job error for a failed or interrupted prompt; null for a success. */
export function jobErrorFromOutcome(outcome: PromptOutcome): JobError | null {
  if (outcome.status === 'success') return null;
  if (outcome.status === 'interrupted') {
    const d = outcome.interrupted;
    return {
      reason: 'interrupted',
      message: `Interrupted before node ${d.node_id} (${d.node_type}) finished`,
      nodeId: d.node_id,
      nodeType: d.node_type,
      details: { executed: d.executed },
    };
  }
  const d = outcome.error;
  return {
    reason: 'execution_error',
    message: d.exception_message.trim() || 'ComfyUI reported an execution error',
    ...(d.node_id ? { nodeId: d.node_id } : {}),
    ...(d.node_type ? { nodeType: d.node_type } : {}),
    ...(d.exception_type ? { exceptionType: d.exception_type } : {}),
    traceback: d.traceback,
    details: { executed: d.executed },
  };
}
