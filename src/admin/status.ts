import { acceptsWork, statusOf, type WorkerReader, type WorkerStatus } from '../dispatch/worker-registry.js';
import type { QueueMode, StatusCounts, JobStore } from '../store/types.js';
import type { ConnectionTracker } from './connection-tracker.js';
import type { FrontendStatus } from '../frontend/index.js';

/** What `GET /api/v1/status` answers (and `comfy-multi status` prints). */
export interface PlatformStatus {
  /** False when the store is unreachable, or jobs wait (queue not paused) with no usable worker. */
  healthy: boolean;
  /** Why not healthy, one sentence each; empty when healthy. */
  problems: string[];
  /** Worth knowing but not unhealthy (paused queue, draining workers, ...). */
  notes: string[];
  version: string;
  startedAt: string;
  uptimeSeconds: number;
  store: { backend: string; reachable: boolean; latencyMs: number | null; error: string | null };
  queue: { mode: QueueMode | null; paused: boolean | null; counts: StatusCounts | null };
  workers: { total: number; usable: number; byStatus: Record<WorkerStatus, number> };
  participants: { online: number; onlineUsers: string[] };
  /** The ComfyUI web frontend participants get (null when the caller did not say). */
  frontend: {
    source: FrontendStatus['source'];
    mirroring: boolean;
    versionId: string | null;
    label: string | null;
    files: number | null;
    bytes: number | null;
    /** The worker it was mirrored from. */
    workerId: string | null;
    cachedVersions: number;
  } | null;
  time: string;
}

export interface StatusDeps {
  store: JobStore;
  workers: WorkerReader;
  tracker: ConnectionTracker;
  version: string;
  startedAt: number;
  frontend?: () => FrontendStatus;
  clock?: () => number;
}

const STATUSES: WorkerStatus[] = ['idle', 'busy', 'draining', 'unhealthy', 'offline'];

export async function computeStatus(deps: StatusDeps): Promise<PlatformStatus> {
  const now = (deps.clock ?? Date.now)();
  const problems: string[] = [];
  const notes: string[] = [];

  const t0 = performance.now();
  let reachable = true;
  let storeError: string | null = null;
  let latencyMs: number | null = null;
  let counts: StatusCounts | null = null;
  let mode: QueueMode | null = null;
  let paused: boolean | null = null;
  try {
    await deps.store.ping();
    latencyMs = Math.round((performance.now() - t0) * 10) / 10;
    const [c, s] = await Promise.all([deps.store.countByStatus(), deps.store.getSettings()]);
    counts = c;
    mode = s.mode;
    paused = s.paused;
  } catch (err) {
    reachable = false;
    storeError = err instanceof Error ? err.message : String(err);
    problems.push(`The ${deps.store.backend} store cannot be reached: ${storeError}`);
  }

  const byStatus = Object.fromEntries(STATUSES.map((s) => [s, 0])) as Record<WorkerStatus, number>;
  const all = deps.workers.all();
  for (const w of all) byStatus[statusOf(w)] += 1;
  const usable = deps.workers.online().filter(acceptsWork).length;

  if (counts && counts.pending > 0 && usable === 0 && !paused) {
    problems.push(
      all.length === 0
        ? `${counts.pending} job(s) are waiting but no GPU worker is connected.`
        : `${counts.pending} job(s) are waiting but no GPU worker is connected, healthy and not draining.`,
    );
  }
  if (paused) notes.push('The queue is paused: no new jobs start until an instructor resumes it.');
  if (byStatus.draining > 0) notes.push(`${byStatus.draining} worker(s) draining.`);
  if (byStatus.unhealthy > 0) notes.push(`${byStatus.unhealthy} worker(s) report their ComfyUI unhealthy.`);
  if (all.length === 0 && problems.length === 0) notes.push('No GPU worker is connected.');

  const fe = deps.frontend?.() ?? null;
  if (fe?.source === 'none') {
    if (fe.mirroring)
      notes.push('No ComfyUI frontend yet: it is copied from the first GPU worker that connects.');
    else
      problems.push(
        'No ComfyUI frontend: set FRONTEND_DIR, or FRONTEND_MIRROR=true to copy it from a worker.',
      );
  }

  const onlineUsers = deps.tracker.onlineUsers();
  return {
    healthy: problems.length === 0,
    problems,
    notes,
    version: deps.version,
    startedAt: new Date(deps.startedAt).toISOString(),
    uptimeSeconds: Math.max(0, Math.round((now - deps.startedAt) / 1000)),
    store: { backend: deps.store.backend, reachable, latencyMs, error: storeError },
    queue: { mode, paused, counts },
    workers: { total: all.length, usable, byStatus },
    participants: { online: onlineUsers.length, onlineUsers },
    frontend: fe && {
      source: fe.source,
      mirroring: fe.mirroring,
      versionId: fe.version?.id ?? null,
      label: fe.version?.label ?? null,
      files: fe.version?.files ?? null,
      bytes: fe.version?.bytes ?? null,
      workerId: fe.version?.workerId ?? null,
      cachedVersions: fe.cachedVersions,
    },
    time: new Date(now).toISOString(),
  };
}

function duration(seconds: number): string {
  const d = Math.floor(seconds / 86_400);
  const h = Math.floor((seconds % 86_400) / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  if (d > 0) return `${d}d ${h}h`;
  if (h > 0) return `${h}h ${m}m`;
  return `${m}m ${seconds % 60}s`;
}

/** A terminal summary of a status, a few aligned lines. */
export function formatStatus(s: PlatformStatus, server: string): string {
  const lines: string[] = [];
  const row = (k: string, v: string) => lines.push(`  ${k.padEnd(13)}${v}`);
  lines.push(`comfy-multi ${s.version} at ${server}: ${s.healthy ? 'HEALTHY' : 'UNHEALTHY'}`);
  row('uptime', `${duration(s.uptimeSeconds)} (since ${new Date(s.startedAt).toLocaleString()})`);
  row(
    'store',
    s.store.reachable
      ? `${s.store.backend}, reachable (${s.store.latencyMs ?? '?'} ms)`
      : `${s.store.backend}, UNREACHABLE`,
  );
  if (s.queue.counts) {
    const c = s.queue.counts;
    row(
      'queue',
      `${s.queue.mode ?? '?'}${s.queue.paused ? ', PAUSED' : ''}: ${c.pending} waiting, ${c.running} running, ` +
        `${c.completed} done, ${c.failed} failed, ${c.cancelled} cancelled`,
    );
  }
  const w = s.workers;
  const parts = (Object.entries(w.byStatus) as [WorkerStatus, number][])
    .filter(([, n]) => n > 0)
    .map(([k, n]) => `${n} ${k}`);
  row(
    'workers',
    w.total === 0 ? 'none connected' : `${w.total} known (${parts.join(', ')}), ${w.usable} usable`,
  );
  row(
    'participants',
    `${s.participants.online} online${s.participants.online > 0 ? ` (${s.participants.onlineUsers.slice(0, 12).join(', ')}${s.participants.online > 12 ? ', …' : ''})` : ''}`,
  );
  if (s.frontend) {
    const f = s.frontend;
    row(
      'frontend',
      f.source === 'dir'
        ? 'FRONTEND_DIR'
        : f.source === 'mirror'
          ? `${f.label ?? '?'} (mirrored from ${f.workerId ?? '?'}, ${f.files ?? '?'} files)`
          : f.mirroring
            ? 'none yet (copied from the first worker)'
            : 'NONE',
    );
  }
  for (const p of s.problems) lines.push(`  PROBLEM: ${p}`);
  for (const n of s.notes) lines.push(`  note: ${n}`);
  return `${lines.join('\n')}\n`;
}
