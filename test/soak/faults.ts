/**
 * The faults of a workshop day, planned from the seed and applied one at a time: `kill -9` of a
 * worker agent, of a ComfyUI stand-in and of the control plane (each restarted a few seconds
 * later), a Redis restart, one long control-plane outage and a worker frozen (SIGSTOP) for longer
 * than its lease. Before each fault the jobs in flight on the target are written down: a job may
 * run again only if it was in flight on a GPU that died or froze.
 */
import type { Cluster, Gpu } from './cluster.js';
import { sleep } from './cluster.js';
import type { Rng } from './rng.js';

export type FaultKind =
  | 'worker-kill'
  | 'standin-kill'
  | 'control-plane-kill'
  | 'control-plane-outage'
  | 'redis-restart'
  | 'worker-freeze';

/** Faults after which a job held by the target GPU may legitimately run again. */
export const GPU_LOSS: ReadonlySet<FaultKind> = new Set(['worker-kill', 'standin-kill', 'worker-freeze']);

export interface PlannedFault {
  kind: FaultKind;
  /** When, in ms after the load started. */
  atMs: number;
  /** How long the target stays down or frozen, in ms. */
  downMs: number;
}

export interface FaultRecord {
  kind: FaultKind;
  /** GPU index for worker/stand-in faults. */
  gpu: number | null;
  /** When it was applied (epoch ms) and when everything was back. */
  at: number;
  recoveredAt: number | null;
  downMs: number;
  /** Jobs in flight on the target (every GPU for control-plane and Redis faults). */
  inFlight: string[];
  note?: string;
}

export interface FaultCounts {
  workerKills: number;
  standinKills: number;
  controlPlaneKills: number;
  redisRestarts: number;
  freezes: number;
  outages: number;
}

/** How many of each fault a run of `minutes` gets: every kind at least once. */
export function faultCounts(minutes: number, store: 'sqlite' | 'redis'): FaultCounts {
  return {
    workerKills: Math.max(1, Math.round(minutes / 5)),
    standinKills: Math.max(1, Math.round(minutes / 5)),
    controlPlaneKills: Math.max(1, Math.round(minutes / 20)),
    redisRestarts: store === 'redis' ? Math.max(1, Math.round(minutes / 15)) : 0,
    freezes: Math.max(1, Math.round(minutes / 15)),
    outages: 1,
  };
}

export interface PlanOptions {
  loadMs: number;
  minutes: number;
  store: 'sqlite' | 'redis';
  leaseMs: number;
  /** The long outage; 45 s on a workshop-length run, scaled down (but beyond the lease) for short ones. */
  outageMs: number;
}

/** The seeded schedule: kinds shuffled, spread over the load phase (first and last 10 % left calm). */
export function planFaults(rng: Rng, o: PlanOptions): PlannedFault[] {
  const c = faultCounts(o.minutes, o.store);
  const kinds: FaultKind[] = [
    ...Array<FaultKind>(c.workerKills).fill('worker-kill'),
    ...Array<FaultKind>(c.standinKills).fill('standin-kill'),
    ...Array<FaultKind>(c.controlPlaneKills).fill('control-plane-kill'),
    ...Array<FaultKind>(c.redisRestarts).fill('redis-restart'),
    ...Array<FaultKind>(c.freezes).fill('worker-freeze'),
    ...Array<FaultKind>(c.outages).fill('control-plane-outage'),
  ];
  rng.shuffle(kinds);
  const start = o.loadMs * 0.1;
  const span = o.loadMs * 0.8;
  const slot = span / kinds.length;
  return kinds.map((kind, i) => ({
    kind,
    atMs: Math.round(start + slot * i + rng.between(0, slot * 0.5)),
    downMs: Math.round(
      kind === 'control-plane-outage'
        ? o.outageMs
        : kind === 'worker-freeze'
          ? o.leaseMs * 1.25 + rng.between(1000, 3000)
          : rng.between(1500, 5000),
    ),
  }));
}

/** Runs the plan in order (each fault fully recovered before the next), until `stopped()`. */
export class FaultRunner {
  readonly records: FaultRecord[] = [];

  constructor(
    private readonly cluster: Cluster,
    private readonly rng: Rng,
    private readonly log: (line: string) => void,
  ) {}

  async run(plan: PlannedFault[], loadStart: number, stopped: () => boolean): Promise<void> {
    for (const f of plan) {
      while (!stopped() && Date.now() < loadStart + f.atMs) await sleep(200);
      if (stopped()) return;
      await this.apply(f);
    }
  }

  /** Jobs held by these GPUs (per the control plane) or executing on their stand-ins right now. */
  private async inFlight(gpus: Gpu[]): Promise<string[]> {
    const ids = new Set<string>();
    try {
      const workers = await this.cluster.workers();
      for (const g of gpus)
        for (const h of workers.find((w) => w.id === g.workerId)?.heldJobs ?? []) ids.add(h.jobId);
    } catch {
      // control plane away: the stand-ins' records still tell what runs
    }
    const open = new Map<string, string>();
    // Only the live stand-in processes: an execution a killed one never ended is not in flight.
    const live = new Set(gpus.map((g) => g.standin?.child.pid).filter((p) => p !== undefined));
    for (const r of this.cluster.executions()) {
      if (!gpus.some((g) => g.index === r.gpu) || !live.has(r.pid)) continue;
      const key = `${r.gpu}:${r.pid}:${r.promptId}`;
      if (r.event === 'start') open.set(key, jobOfPrefixes(r.prefixes) ?? '');
      else open.delete(key);
    }
    for (const id of open.values()) if (id) ids.add(id);
    return [...ids];
  }

  /** A GPU that holds work right now if there is one (a fault on an idle GPU proves little). */
  private async target(): Promise<Gpu> {
    const gpus = this.cluster.gpus;
    for (let i = 0; i < 25; i++) {
      try {
        const busy = (await this.cluster.workers()).filter((w) => w.heldJobs.length > 0).map((w) => w.id);
        const candidates = gpus.filter((g) => busy.includes(g.workerId));
        if (candidates.length) return this.rng.pick(candidates);
      } catch {
        break;
      }
      await sleep(200);
    }
    return this.rng.pick(gpus);
  }

  private async apply(f: PlannedFault): Promise<void> {
    const c = this.cluster;
    const gpuFault = f.kind === 'worker-kill' || f.kind === 'standin-kill' || f.kind === 'worker-freeze';
    const gpu = gpuFault ? await this.target() : null;
    const rec: FaultRecord = {
      kind: f.kind,
      gpu: gpu?.index ?? null,
      at: Date.now(),
      recoveredAt: null,
      downMs: f.downMs,
      inFlight: await this.inFlight(gpu ? [gpu] : c.gpus),
    };
    this.records.push(rec);
    this.log(
      `fault ${f.kind}${gpu ? ` on gpu ${gpu.index}` : ''} for ${(f.downMs / 1000).toFixed(1)} s; in flight: ${rec.inFlight.length ? rec.inFlight.join(', ') : 'none'}`,
    );
    try {
      switch (f.kind) {
        case 'worker-kill':
          await c.kill(gpu!.agent);
          rec.at = Date.now();
          await sleep(f.downMs);
          c.startAgent(gpu!);
          break;
        case 'standin-kill':
          await c.kill(gpu!.standin);
          rec.at = Date.now();
          await sleep(f.downMs);
          await c.startStandin(gpu!);
          break;
        case 'worker-freeze':
          c.signal(gpu!.agent, 'SIGSTOP');
          rec.at = Date.now();
          await sleep(f.downMs);
          c.signal(gpu!.agent, 'SIGCONT');
          break;
        case 'control-plane-kill':
        case 'control-plane-outage':
          await c.killControlPlane();
          rec.at = Date.now();
          await sleep(f.downMs);
          await c.startControlPlane();
          break;
        case 'redis-restart':
          await c.restartRedis(f.downMs);
          break;
      }
      await c.waitForWorkers(120_000);
    } catch (err) {
      rec.note = `recovery failed: ${(err as Error).message}`;
      this.log(`fault ${f.kind}: ${rec.note}`);
    }
    rec.recoveredAt = Date.now();
  }
}

/** The job id in an agent-rewritten `filename_prefix`: `<user>/<job id>/…`. */
export function jobOfPrefixes(prefixes: string[] | undefined): string | null {
  for (const p of prefixes ?? []) {
    const m = /^[^/]+\/([^/]+)\//.exec(p);
    if (m) return m[1]!;
  }
  return null;
}
