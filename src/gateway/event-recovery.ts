/**
 * Events a participant may have missed when a control-plane process died (kill -9) with a job's
 * events in hand, for agents that do not number their events (`hello.eventSeq` absent; today's
 * agent numbers them and sends them again after a reconnect, see control-link.ts, so for it
 * nothing here runs): such an agent relays each ComfyUI event once, to the process holding its
 * connection, and a process killed before it logged and published one loses it. When such a job —
 * taken over by the process its worker reconnected to — completes, ComfyUI's `execution_start`
 * and each output node's `executed` that are neither in the owner's durable event log nor relayed
 * since are made again from the recorded job (the outputs exactly as `/history` shows them), and go
 * out before ComfyUI's ending. So the owner's ComfyUI still shows every output; the cost is that
 * such an event may arrive late, and out of ComfyUI's order.
 *
 * A report of a finish the dead process had already recorded (the agent sends it again when its
 * ack never came) also gets ComfyUI's ending made again (`execution_success`,
 * `executing {node: null}`) when the log lacks it. And every process is asked to read back, for the
 * owner's sockets it holds, logged events they never received (a process killed between logging an
 * event and publishing it).
 */
import type { EventRelay } from '../cluster/events.js';
import { LOG_MAX_ENTRIES } from '../cluster/event-log.js';
import type { JobEventMessage } from '../dispatch/job-event-bus.js';
import type { Job } from '../store/types.js';
import { historyOutputs } from './history-shape.js';

export function recoverMissedEvents(relay: EventRelay) {
  return async (
    job: Job,
    workerId: string,
    seen: ReadonlySet<string>,
    opts: { ending?: boolean; makeUp?: boolean } = {},
  ): Promise<JobEventMessage[]> => {
    // An agent that numbers its events sent them all again, and those logged before went out again
    // under their first ids: nothing is missing. (A read-back would also hand sockets that moved
    // since then events they had on their previous connection.)
    if (opts.makeUp === false) return [];
    const log = relay.log;
    relay.requestRecover([job.user]);
    if (!log) return [];
    const have = new Set(seen);
    for (const e of await log.after(job.user, '0-0', LOG_MAX_ENTRIES)) {
      if (e.jobId !== job.id) continue;
      if (e.event.type === 'execution_start' || e.event.type === 'execution_success') have.add(e.event.type);
      if (e.event.type === 'executing' && (e.event.data as { node?: unknown } | null)?.node === null)
        have.add('executing:null');
      const node = (e.event.data as { node?: unknown } | null)?.node;
      if (e.event.type === 'executed' && typeof node === 'string') have.add(`executed:${node}`);
    }
    const ev = (type: string, data: Record<string, unknown>): JobEventMessage => ({
      kind: 'event',
      jobId: job.id,
      user: job.user,
      workerId,
      event: { type, data: { ...data, prompt_id: job.id } },
    });
    const out: JobEventMessage[] = [];
    if (!have.has('execution_start'))
      out.push(ev('execution_start', { timestamp: job.startedAt ?? job.finishedAt ?? Date.now() }));
    for (const [node, output] of Object.entries(historyOutputs(job)))
      if (!have.has(`executed:${node}`)) out.push(ev('executed', { node, display_node: node, output }));
    if (opts.ending && job.status === 'completed') {
      const at = job.finishedAt ?? Date.now();
      if (!have.has('execution_success')) out.push(ev('execution_success', { timestamp: at }));
      if (!have.has('executing:null')) out.push(ev('executing', { node: null, display_node: null }));
    }
    return out;
  };
}
