/**
 * Putting the agent's view of ComfyUI right after ComfyUI was away: prompts the agent gave up
 * must not run there, and jobs whose events were lost while the socket was down are settled from
 * ComfyUI's queue and `/history`.
 */
import type { Logger } from 'pino';
import type { ComfyClient } from '../../comfy/comfy-client.js';
import type { HistoryEntry } from '../../comfy/protocol.js';
import type { HealthMonitor } from './health.js';
import type { AgentJob, JobTable } from './jobs.js';

/** What of the job runner this needs (the runner passes itself). */
interface Runner {
  comfy: ComfyClient;
  jobs: JobTable;
  log: Logger;
  health: Pick<HealthMonitor, 'suspect'>;
  markStarted(job: AgentJob): void;
  giveBack(job: AgentJob, reason: string): Promise<void>;
  settleFromHistory(job: AgentJob, entry: HistoryEntry): void;
}

/** After ComfyUI comes back: make sure no prompt we gave up still waits or runs there. */
export async function sweepBuried(r: Runner): Promise<void> {
  const buried = r.jobs.buried();
  if (buried.length === 0) return;
  try {
    const q = await r.comfy.getQueue();
    const ids = new Set(buried);
    const pending = q.queue_pending.map((i) => i[1]).filter((id) => ids.has(id));
    if (pending.length > 0) await r.comfy.deleteFromQueue(pending);
    for (const item of q.queue_running) if (ids.has(item[1])) await r.comfy.interrupt(item[1]);
  } catch (err) {
    r.log.debug({ err: (err as Error).message }, 'could not sweep given-up prompts');
  }
}

/**
 * The ComfyUI socket was down for a while, so events may be lost. For each job ComfyUI holds,
 * look it up: finished ones are completed from `/history`; ones still queued or running carry on.
 */
export async function recoverAfterSocketGap(r: Runner): Promise<void> {
  // `finishing` but not settling: its final `executing` may have been lost in the gap.
  const held = r.jobs
    .all()
    .filter((j) => j.state === 'queued' || j.state === 'running' || (j.state === 'finishing' && !j.settling));
  if (held.length === 0) return;
  try {
    const q = await r.comfy.getQueue();
    for (const job of held) {
      if (!r.jobs.holds(job)) continue;
      const running = q.queue_running.some((i) => i[1] === job.promptId);
      const pending = q.queue_pending.some((i) => i[1] === job.promptId);
      if (running) {
        r.markStarted(job);
        continue;
      }
      if (pending) continue;
      const history = await r.comfy.history(job.promptId);
      const entry = history[job.promptId];
      if (!r.jobs.holds(job)) continue;
      if (!entry) {
        await r.giveBack(job, 'ComfyUI lost the prompt (restarted?)');
        continue;
      }
      r.settleFromHistory(job, entry);
    }
  } catch (err) {
    r.log.warn(
      { err: (err as Error).message },
      'could not reconcile jobs after the ComfyUI socket reconnected',
    );
    r.health.suspect((err as Error).message);
  }
}
