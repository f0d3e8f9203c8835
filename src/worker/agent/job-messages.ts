/**
 * Shaping what the agent tells ComfyUI and the control plane about a job: nothing of the
 * participant's browser reaches ComfyUI, and nothing outside the protocol's limits goes back.
 */
import type { JobError } from '../../store/types.js';

/** ComfyUI's `client_id` is the agent's; a browser's id in the job's extra_data must not leak in. */
export function withoutClientId(extra: Record<string, unknown>): Record<string, unknown> {
  const { client_id: _drop, ...rest } = extra;
  return rest;
}

/** Keeps a JobError inside the protocol's limits. */
export function clampError(e: JobError): JobError {
  const out: JobError = { ...e, reason: e.reason.slice(0, 64), message: e.message.slice(0, 20_000) };
  if (e.nodeId) out.nodeId = e.nodeId.slice(0, 64);
  if (e.nodeType) out.nodeType = e.nodeType.slice(0, 256);
  if (e.exceptionType) out.exceptionType = e.exceptionType.slice(0, 256);
  if (e.traceback) out.traceback = e.traceback.slice(-500).map((l) => l.slice(0, 20_000));
  return out;
}
