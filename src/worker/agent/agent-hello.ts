/**
 * What the agent says about itself to the control plane: the `hello` that opens each connection,
 * and the devices and held jobs every heartbeat repeats. Apart from {@link WorkerAgent} because
 * these are plain functions of a snapshot of the agent's state, readable without the connection
 * and ComfyUI wiring around them.
 */
import type { SystemStats } from '../../comfy/protocol.js';
import { VERSION } from '../../version.js';
import { PROTOCOL_VERSION, type AgentMessage, type EphemeralInfo } from '../protocol.js';
import type { ControlLink } from './control-link.js';
import type { AgentJob } from './jobs.js';
import type { AgentModelDownloads } from './model-downloads.js';

export type Hello = Extract<AgentMessage, { type: 'hello' }>;
export type Device = Hello['devices'][number];
export type InFlight = Hello['inFlight'][number];

/** A placeholder env hash for a hello sent before ComfyUI ever answered. */
export const NO_ENV_HASH = '0'.repeat(64);
const MAX_IN_FLIGHT = 16;

export interface HelloState {
  settings: { name: string; prefetch: number; ephemeral?: EphemeralInfo | undefined };
  comfyVersion: string | null;
  devices: Device[];
  envHash: string;
  inFlight: InFlight[];
  warmModels: string[];
  healthy: boolean;
  stopping: boolean;
  models: Pick<AgentModelDownloads, 'enabled' | 'statuses'>;
}

export function helloMessage(s: HelloState): Hello {
  return {
    type: 'hello',
    protocol: PROTOCOL_VERSION,
    name: s.settings.name,
    agentVersion: VERSION,
    comfyuiVersion: (s.comfyVersion ?? 'unknown').slice(0, 64),
    devices: s.devices,
    envHash: s.envHash,
    prefetch: s.settings.prefetch,
    inFlight: s.inFlight,
    warmModels: s.warmModels.slice(0, 256),
    healthy: s.healthy,
    stopping: s.stopping,
    acks: true,
    eventSeq: true,
    ...(s.settings.ephemeral ? { ephemeral: s.settings.ephemeral } : {}),
    ...(s.models.enabled ? { modelDownloads: true, downloads: s.models.statuses() } : {}),
  };
}

/** Jobs held, plus finished ones whose report waits for the connection (still leased to us). */
export function inFlightJobs(
  held: readonly AgentJob[],
  pendingOutcomes: ReturnType<ControlLink['pendingOutcomes']>,
): InFlight[] {
  const out: InFlight[] = held.map((j) => ({
    jobId: j.jobId,
    attempt: j.attempt,
    state: j.state === 'running' || j.state === 'finishing' ? 'running' : 'queued',
  }));
  // A finish waiting for its ack is announced too, so the server keeps the job ours meanwhile.
  for (const m of pendingOutcomes) {
    if (m.type !== 'job_completed' && m.type !== 'job_failed') continue;
    if (!out.some((o) => o.jobId === m.jobId && o.attempt === m.attempt)) {
      out.push({ jobId: m.jobId, attempt: m.attempt, state: 'running' });
    }
  }
  return out.slice(0, MAX_IN_FLIGHT);
}

/** ComfyUI's devices as the control plane takes them (bounded). */
export function devicesFromStats(stats: SystemStats): Device[] {
  return stats.devices.slice(0, 64).map((d) => ({
    name: d.name.slice(0, 256),
    type: d.type.slice(0, 64),
    vramTotal: Math.max(0, d.vram_total),
    vramFree: Math.max(0, d.vram_free),
  }));
}
