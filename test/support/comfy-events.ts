/**
 * What ComfyUI sent about each prompt, and the same events as a job's owner must see them on their
 * `/ws` (test/e2e/events.e2e.test.ts, test/e2e/cluster-events.e2e.test.ts).
 */
import { randomUUID } from 'node:crypto';
import { pino } from 'pino';
import { ComfyClient } from '../../src/comfy/comfy-client.js';
import type { ComfySocket } from '../../src/comfy/comfy-socket.js';
import { WorkerAgent } from '../../src/worker/agent/agent.js';
import { DEFAULT_BACKOFF } from '../../src/worker/agent/backoff.js';

export type Event = { type: string; data: Record<string, unknown> };

/** A ComfyClient that also writes down every text message its socket gets about a prompt. */
export class RecordingComfyClient extends ComfyClient {
  readonly sent = new Map<string, Event[]>();

  override openSocket(options: Parameters<ComfyClient['openSocket']>[0] = {}): ComfySocket {
    const socket = super.openSocket(options);
    const record = (type: string, data: unknown, pid: string | null) => {
      if (!pid) return;
      let list = this.sent.get(pid);
      if (!list) this.sent.set(pid, (list = []));
      list.push({ type, data: data as Record<string, unknown> });
    };
    socket.on('message', (m, pid) => record(m.type, m.data, pid));
    socket.on('other', (m) => {
      const pid = (m.data as { prompt_id?: unknown } | null)?.prompt_id;
      record(m.type, m.data, typeof pid === 'string' ? pid : null);
    });
    return socket;
  }
}

/**
 * A worker agent in the test's own process, serving `comfyuiUrl` through a RecordingComfyClient,
 * started (it connects to `serverUrl` on its own). The caller stops it.
 */
export function startRecordingAgent(opts: { serverUrl: string; token: string; comfyuiUrl: string }): {
  agent: WorkerAgent;
  comfy: RecordingComfyClient;
} {
  const comfy = new RecordingComfyClient({
    baseUrl: opts.comfyuiUrl,
    clientId: `comfy-multi-${randomUUID()}`,
  });
  const agent = new WorkerAgent(
    {
      serverUrl: opts.serverUrl,
      token: opts.token,
      name: 'events',
      prefetch: 1,
      logger: pino({ level: 'silent' }),
      // Stand-in, control plane and agent share this one process: on a loaded CI machine its event
      // loop can stall for seconds, and a health probe that times out hands jobs back, which runs
      // them twice in ComfyUI and breaks the job ↔ prompt pairing by start order.
      probeIntervalMs: 2000,
      probeTimeoutMs: 15_000,
      failuresToUnhealthy: 3,
      backoff: DEFAULT_BACKOFF,
      uploadConcurrency: 2,
      uploadAttempts: 8,
      mirrorFrontend: false,
    },
    comfy,
  );
  agent.start();
  return { agent, comfy };
}

/**
 * A file's name and folder as the participant sees them are the control plane's (ComfyUI's naming
 * in the participant's own sequence: src/gateway/outputs.e2e.test.ts checks those); everything
 * else of the event must be ComfyUI's own. Applied to both sides before comparing.
 */
export function withoutFileNames(e: Event): Event {
  if (e.type !== 'executed' || typeof e.data.output !== 'object' || e.data.output === null) return e;
  const output = Object.fromEntries(
    Object.entries(e.data.output as Record<string, unknown>).map(([k, items]) => [
      k,
      Array.isArray(items)
        ? items.map((it: unknown) =>
            typeof it === 'object' && it !== null && 'filename' in it
              ? { ...it, filename: '<name>', subfolder: '<folder>' }
              : it,
          )
        : items,
    ]),
  );
  return { type: e.type, data: { ...e.data, output } };
}

/** ComfyUI's event as the owner must see it: our job id (file names aside, see above). */
export function asOwnerSees(e: Event, jobId: string): Event {
  const data: Record<string, unknown> = { ...e.data };
  if ('prompt_id' in data) data.prompt_id = jobId;
  if (typeof data.nodes === 'object' && data.nodes !== null && !Array.isArray(data.nodes)) {
    data.nodes = Object.fromEntries(
      Object.entries(data.nodes as Record<string, Record<string, unknown>>).map(([k, v]) => [
        k,
        'prompt_id' in v ? { ...v, prompt_id: jobId } : v,
      ]),
    );
  }
  return withoutFileNames({ type: e.type, data });
}
