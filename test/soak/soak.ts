/**
 * A workshop day in miniature: start everything (cluster.ts), let the participants work
 * (participant.ts) while the faults happen (faults.ts), drain the queue, then check the
 * invariants (checks.ts) and build the report.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runChecks, type CheckResult } from './checks.js';
import { Cluster, freshBuild, sleep, type JobView } from './cluster.js';
import { FaultRunner, planFaults, type FaultRecord, type PlannedFault } from './faults.js';
import { Participant, type ParticipantCounters } from './participant.js';
import { Rng } from './rng.js';

export interface SoakOptions {
  users: number;
  workers: number;
  /** Length of the load phase (participants at work, faults happening). */
  minutes: number;
  store: 'sqlite' | 'redis';
  seed: number;
  /** LEASE_MS of the control plane; the freeze lasts longer than this. Default 8000. */
  leaseMs?: number;
  /** HEARTBEAT_MS. Default 1000. */
  heartbeatMs?: number;
  /** The long outage. Default 45 s, or for runs under 10 minutes max(lease + 4 s, 10 % of the run). */
  outageMs?: number;
  /** Participants' think time between two "Queue" presses. Default 20–90 s. */
  thinkMs?: [number, number];
  /** Allowed control-plane RSS growth after warm-up, MB. Default 64. */
  rssGrowthBoundMb?: number;
  /** Allowed control-plane RSS at any time, MB. Default 512. */
  rssMaxBoundMb?: number;
  /** Where the report, logs and data go. Default a temporary folder. */
  outDir?: string;
  /** Keep the data folder (default: only the report and logs are kept). */
  keepData?: boolean;
  /** `compiled` (dist/, default when a fresh build exists) or `tsx`. */
  build?: 'compiled' | 'tsx';
  log?: (line: string) => void;
}

export interface SoakReport {
  ok: boolean;
  options: Required<Omit<SoakOptions, 'log' | 'outDir' | 'keepData'>>;
  startedAt: string;
  wallSeconds: number;
  loadSeconds: number;
  drainSeconds: number;
  outDir: string;
  figures: {
    jobs: number;
    byStatus: Record<string, number>;
    /** Failed jobs by `error.reason` (e.g. `worker_lost` after every attempt died with its GPU). */
    failureReasons: Record<string, number>;
    participants: ParticipantCounters;
    reRuns: CheckResult['reRuns'];
    learned: Record<string, number>;
    throughputPerMinute: number;
  };
  faults: (Omit<FaultRecord, 'at' | 'recoveredAt'> & {
    atSeconds: number;
    recoveredAfterSeconds: number | null;
  })[];
  plannedFaults: PlannedFault[];
  invariants: CheckResult['invariants'];
  memory: CheckResult['memory'];
}

function resolved(o: SoakOptions) {
  const leaseMs = o.leaseMs ?? 8000;
  const loadMs = o.minutes * 60_000;
  return {
    users: o.users,
    workers: o.workers,
    minutes: o.minutes,
    store: o.store,
    seed: o.seed,
    leaseMs,
    heartbeatMs: o.heartbeatMs ?? 1000,
    outageMs: o.outageMs ?? (o.minutes >= 10 ? 45_000 : Math.round(Math.max(leaseMs + 4000, loadMs * 0.1))),
    thinkMs: o.thinkMs ?? ([20_000, 90_000] as [number, number]),
    rssGrowthBoundMb: o.rssGrowthBoundMb ?? 64,
    rssMaxBoundMb: o.rssMaxBoundMb ?? 512,
    build: o.build ?? (freshBuild() ? 'compiled' : 'tsx'),
  };
}

export async function runSoak(options: SoakOptions): Promise<SoakReport> {
  const o = resolved(options);
  const outDir = options.outDir ?? mkdtempSync(join(tmpdir(), `cm-soak-${o.store}-`));
  mkdirSync(outDir, { recursive: true });
  const logLines: string[] = [];
  const t0 = Date.now();
  const log = (line: string) => {
    const stamped = `[${((Date.now() - t0) / 1000).toFixed(1).padStart(7)} s] ${line}`;
    logLines.push(stamped);
    options.log?.(stamped);
  };
  const rng = new Rng(o.seed);
  const faultRng = rng.fork(1);
  const cluster = new Cluster({
    dir: outDir,
    users: o.users,
    workers: o.workers,
    store: o.store,
    leaseMs: o.leaseMs,
    heartbeatMs: o.heartbeatMs,
    build: o.build,
    log,
  });
  const participants: Participant[] = [];
  let report: SoakReport | null = null;
  try {
    log(
      `starting: ${o.users} participants, ${o.workers} GPUs, store ${o.store}, seed ${o.seed}, ${o.build} control plane`,
    );
    await cluster.start();
    log(`control plane at ${cluster.url}; ${o.workers} workers connected`);

    const loadMs = o.minutes * 60_000;
    const plan = planFaults(faultRng, {
      loadMs,
      minutes: o.minutes,
      store: o.store,
      leaseMs: o.leaseMs,
      outageMs: o.outageMs,
    });
    log(`fault plan: ${plan.map((f) => `${f.kind}@${(f.atMs / 1000).toFixed(0)}s`).join(', ')}`);
    const loadStart = Date.now();
    const until = loadStart + loadMs;
    const firstMs: [number, number] = [1000, Math.min(o.thinkMs[0], loadMs / 3)];
    let i = 0;
    for (const [name, password] of cluster.passwords) {
      participants.push(
        new Participant(
          name,
          password,
          cluster.url,
          rng.fork(100 + i++),
          { thinkMs: o.thinkMs, firstMs },
          log,
        ),
      );
    }
    const runner = new FaultRunner(cluster, faultRng, log);
    const progress = setInterval(() => {
      const accepted = participants.reduce((n, p) => n + p.counters.accepted, 0);
      log(`load: ${accepted} jobs accepted, ${runner.records.length}/${plan.length} faults`);
    }, 30_000);
    // Every planned fault happens: when recoveries took long, the load goes on until the last one is over.
    let faultsOver = false;
    const faultsDone = runner.run(plan, loadStart, () => false).finally(() => (faultsOver = true));
    await Promise.all(participants.map((p) => p.run(() => Date.now() < until || !faultsOver)));
    await faultsDone;
    clearInterval(progress);
    log('load over');

    // Drain: every GPU back, every job to its end. Participants keep their sockets meanwhile.
    const drainStart = Date.now();
    const drainLimit = Math.max(180_000, o.leaseMs * 6);
    let jobs: JobView[] = [];
    let drained = false;
    while (Date.now() - drainStart < drainLimit) {
      try {
        jobs = await cluster.allJobs();
        const open = jobs.filter((j) => j.status === 'pending' || j.status === 'running').length;
        if (open === 0) {
          drained = true;
          break;
        }
      } catch (err) {
        log(`drain: ${(err as Error).message}`);
      }
      await sleep(1000);
    }
    // Let the last status messages and history refreshes land, then take the participants' last look.
    await sleep(3000);
    await Promise.all(participants.map((p) => p.finish()));
    jobs = await cluster.allJobs();
    const drainSeconds = (Date.now() - drainStart) / 1000;
    log(
      `drain ${drained ? 'complete' : 'TIMED OUT'} after ${drainSeconds.toFixed(0)} s; ${jobs.length} jobs`,
    );

    const checks = runChecks({
      jobs,
      executions: cluster.executions(),
      faults: runner.records,
      participants,
      filesDir: cluster.filesDir,
      rss: cluster.rss,
      rssGrowthBoundMb: o.rssGrowthBoundMb,
      rssMaxBoundMb: o.rssMaxBoundMb,
      drained,
    });
    const counters = sumCounters(participants.map((p) => p.counters));
    const byStatus: Record<string, number> = {};
    const failureReasons: Record<string, number> = {};
    for (const j of jobs) {
      byStatus[j.status] = (byStatus[j.status] ?? 0) + 1;
      if (j.status === 'failed') {
        const reason = j.error?.reason ?? 'unknown';
        failureReasons[reason] = (failureReasons[reason] ?? 0) + 1;
      }
    }
    report = {
      ok: checks.invariants.every((x) => x.ok),
      options: o,
      startedAt: new Date(t0).toISOString(),
      wallSeconds: 0,
      loadSeconds: loadMs / 1000,
      drainSeconds: Math.round(drainSeconds),
      outDir,
      figures: {
        jobs: jobs.length,
        byStatus,
        failureReasons,
        participants: counters,
        reRuns: checks.reRuns,
        learned: checks.learned,
        throughputPerMinute:
          Math.round(((byStatus.completed ?? 0) / (o.minutes + drainSeconds / 60)) * 10) / 10,
      },
      faults: runner.records.map(({ at, recoveredAt, ...rest }) => ({
        ...rest,
        atSeconds: Math.round((at - loadStart) / 100) / 10,
        recoveredAfterSeconds: recoveredAt === null ? null : Math.round((recoveredAt - at) / 100) / 10,
      })),
      plannedFaults: plan,
      invariants: checks.invariants,
      memory: checks.memory,
    };
    return report;
  } finally {
    for (const p of participants) p.close();
    await cluster.stop();
    if (report) report.wallSeconds = Math.round((Date.now() - t0) / 1000);
    writeFileSync(join(outDir, 'soak.log'), `${logLines.join('\n')}\n`);
    writeFileSync(
      join(outDir, 'processes.log'),
      cluster.procs.all
        .map((p) => `===== ${p.name} (pid ${p.child.pid}) =====\n${p.log.join('')}`)
        .join('\n'),
    );
    if (report) writeFileSync(join(outDir, 'report.json'), `${JSON.stringify(report, null, 2)}\n`);
    if (!options.keepData) {
      rmSync(join(outDir, 'data'), { recursive: true, force: true });
      rmSync(join(outDir, 'redis'), { recursive: true, force: true });
      for (let g = 1; g <= o.workers; g++)
        rmSync(join(outDir, `standin-${g}`), { recursive: true, force: true });
    }
  }
}

function sumCounters(all: ParticipantCounters[]): ParticipantCounters {
  const out = { ...all[0]! };
  for (const k of Object.keys(out) as (keyof ParticipantCounters)[])
    out[k] = all.reduce((n, c) => n + c[k], 0);
  return out;
}
