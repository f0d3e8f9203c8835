/**
 * `npm run bench -- autoscale`: a workshop day simulated on a discrete-event clock (no real time
 * passes) and scaled by the SAME decision function the control plane runs (src/autoscale/decide.ts),
 * against "2 GPUs always on". 20 participants, 09:00–17:00: lectures (a few jobs), exercises
 * (everyone iterates: submit, wait for the result, think, submit again; the instructor's "go"
 * starts a burst), two breaks and lunch (nothing). GPU starts take 30–180 s, as clouds' do.
 *
 * Figures: GPU hours billed (start request to stop, as clouds bill), p50/p95 wait from submit to
 * start, per policy, pooled over several seeded days. Goal: ≥ 40 % fewer GPU hours than always-on
 * at a p95 wait within 2 minutes of always-on's.
 */
import { decide, type PoolPolicy, type PoolState } from '../src/autoscale/decide.js';
import { policyFromConfig } from '../src/autoscale/index.js';
import { loadConfig } from '../src/config/load-config.js';
import { percentile } from './stats.js';

const MIN = 60_000;
const DAY_MS = 8 * 60 * MIN;
const PARTICIPANTS = 20;
const TICK_MS = 5000; // AUTOSCALE_INTERVAL_SECONDS default
const START_DELAY_MS: [number, number] = [30_000, 180_000];

type Phase = {
  from: number;
  to: number;
  kind: 'lecture' | 'exercise' | 'break';
  jobS?: number;
  thinkS?: number;
};

/** The day, minutes after 09:00. Exercise jobs ~12 s (image), the afternoon's ~25 s (bigger). */
const DAY: Phase[] = (
  [
    { from: 0, to: 45, kind: 'lecture' },
    { from: 45, to: 105, kind: 'exercise', jobS: 12, thinkS: 180 },
    { from: 105, to: 120, kind: 'break' },
    { from: 120, to: 150, kind: 'lecture' },
    { from: 150, to: 210, kind: 'exercise', jobS: 12, thinkS: 180 },
    { from: 210, to: 270, kind: 'break' }, // lunch
    { from: 270, to: 300, kind: 'lecture' },
    { from: 300, to: 375, kind: 'exercise', jobS: 25, thinkS: 300 },
    { from: 375, to: 390, kind: 'break' },
    { from: 390, to: 450, kind: 'exercise', jobS: 15, thinkS: 200 },
    { from: 450, to: 480, kind: 'lecture' },
  ] as Phase[]
).map((p) => ({ ...p, from: p.from * MIN, to: p.to * MIN }));

/** During lectures each participant tries something about once in 40 minutes. */
const LECTURE_MEAN_GAP_MS = 40 * MIN;
const LECTURE_JOB_S = 12;

function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const expo = (r: () => number, mean: number) => -Math.log(1 - r()) * mean;
/** Job durations vary ±50 % around the phase's typical one (log-uniform-ish). */
const jitter = (r: () => number, s: number) => s * 1000 * (0.6 + r() * 0.9);
const phaseAt = (t: number) => DAY.find((p) => t >= p.from && t < p.to) ?? null;

interface Job {
  user: number;
  submittedAt: number;
  runMs: number;
  startedAt: number | null;
}
interface Gpu {
  id: string;
  requestedAt: number;
  readyAt: number;
  job: Job | null;
  idleSince: number | null;
  stoppedAt: number | null;
}

export interface PolicyRun {
  name: string;
  /** null: `alwaysOn` GPUs all day, no autoscaler. */
  policy: PoolPolicy | null;
  alwaysOn?: number;
  /** The instructor warms N GPUs 3 minutes before each exercise, for an hour. */
  warmBeforeExercises?: number;
}

export interface DayResult {
  gpuHours: number;
  waitsS: number[];
  starts: number;
}

/** One simulated day. Events are processed in time order; the autoscaler looks every 5 s. */
export function simulateDay(run: PolicyRun, seed: number): DayResult {
  const r = rng(seed);
  const queue: Job[] = [];
  const waits: number[] = [];
  const gpus: Gpu[] = [];
  let lastUpAt: number | null = null;
  let lastDownAt: number | null = null;
  let hold: PoolState['hold'] = null;
  let spareSince: number | null = null;
  let starts = 0;
  let n = 0;
  // Each participant's next submission (closed loop in exercises: after their result + thinking).
  const nextSubmit: (number | null)[] = Array.from({ length: PARTICIPANTS }, () => null);
  const waitingForResult = new Set<number>();

  const scheduleNext = (user: number, after: number) => {
    const p = phaseAt(after);
    if (!p) return void (nextSubmit[user] = null);
    if (p.kind === 'exercise') nextSubmit[user] = after + expo(r, p.thinkS! * 1000);
    else if (p.kind === 'lecture') nextSubmit[user] = after + expo(r, LECTURE_MEAN_GAP_MS);
    else nextSubmit[user] = p.to; // breaks: nothing until the break ends
    // Crossing into another phase: re-draw there (an exercise's "go" is a burst within 2 minutes).
    const q = phaseAt(nextSubmit[user]!);
    if (q !== p)
      nextSubmit[user] = q
        ? q.from + (q.kind === 'exercise' ? r() * 2 * MIN : expo(r, LECTURE_MEAN_GAP_MS))
        : null;
  };
  for (let u = 0; u < PARTICIPANTS; u++) scheduleNext(u, 0);

  if (run.policy === null) {
    for (let i = 0; i < (run.alwaysOn ?? 2); i++)
      gpus.push({ id: `on${i}`, requestedAt: 0, readyAt: 0, job: null, idleSince: 0, stoppedAt: null });
  }

  const dispatch = (now: number) => {
    for (const g of gpus) {
      if (g.stoppedAt !== null || g.readyAt > now || g.job || queue.length === 0) continue;
      const job = queue.shift()!;
      job.startedAt = now;
      waits.push((now - job.submittedAt) / 1000);
      g.job = job;
      g.idleSince = null;
    }
  };

  const scale = (now: number) => {
    if (!run.policy) return;
    if (run.warmBeforeExercises) {
      const ex = DAY.find(
        (p) => p.kind === 'exercise' && now >= p.from - 3 * MIN && now < p.from - 3 * MIN + TICK_MS,
      );
      if (ex) hold = { count: run.warmBeforeExercises, until: now + 60 * MIN };
    }
    const live = gpus.filter((g) => g.stoppedAt === null);
    const used = gpus.reduce((s, g) => s + ((g.stoppedAt ?? now) - g.requestedAt), 0);
    const spare = queue.length === 0 && live.some((g) => g.readyAt <= now && !g.job);
    spareSince = spare ? (spareSince ?? now) : null;
    const state: PoolState = {
      now,
      pending: queue.length,
      oldestPendingAt: queue[0]?.submittedAt ?? null,
      instances: live.map((g) => ({
        id: g.id,
        phase: g.readyAt > now ? 'starting' : 'ready',
        requestedAt: g.requestedAt,
        held: g.job ? 1 : 0,
        idleSince: g.readyAt > now ? null : g.idleSince,
      })),
      otherWorkers: 0,
      lastUpAt,
      lastDownAt,
      usedTodayMs: used,
      hold,
      stopAll: false,
      spareSince,
    };
    for (const d of decide(state, run.policy)) {
      if (d.action === 'start') {
        lastUpAt = now;
        for (let i = 0; i < d.count; i++) {
          starts++;
          const delay = START_DELAY_MS[0] + r() * (START_DELAY_MS[1] - START_DELAY_MS[0]);
          gpus.push({
            id: `g${n++}`,
            requestedAt: now,
            readyAt: now + delay,
            job: null,
            idleSince: now + delay,
            stoppedAt: null,
          });
        }
      } else if (d.action === 'stop') {
        const g = gpus.find((x) => x.id === d.id)!;
        if (!d.failedStart) lastDownAt = now;
        g.stoppedAt = now;
      }
    }
  };

  // The clock: the next of (a submission, a job's end, a GPU becoming ready, the autoscaler's tick).
  let now = 0;
  let nextTick = 0;
  const horizon = DAY_MS + 4 * 60 * MIN; // late jobs still finish
  while (now < horizon) {
    const candidates = [nextTick];
    for (const t of nextSubmit) if (t !== null && t < DAY_MS) candidates.push(t);
    for (const g of gpus) {
      if (g.stoppedAt !== null) continue;
      if (g.job) candidates.push(g.job.startedAt! + g.job.runMs);
      else if (g.readyAt > now) candidates.push(g.readyAt);
    }
    now = Math.max(now, Math.min(...candidates));
    if (now >= DAY_MS && queue.length === 0 && gpus.every((g) => !g.job)) break;
    for (const g of gpus) {
      if (g.job && g.job.startedAt! + g.job.runMs <= now) {
        const done = g.job;
        g.job = null;
        g.idleSince = now;
        waitingForResult.delete(done.user);
        if (phaseAt(now)?.kind === 'exercise') scheduleNext(done.user, now);
      }
    }
    for (let u = 0; u < PARTICIPANTS; u++) {
      const t = nextSubmit[u] ?? null;
      if (t === null || t > now || t >= DAY_MS) continue;
      const p = phaseAt(t)!;
      if (p.kind === 'exercise' && waitingForResult.has(u)) {
        nextSubmit[u] = null; // submits again after the result
        continue;
      }
      queue.push({ user: u, submittedAt: t, runMs: jitter(r, p.jobS ?? LECTURE_JOB_S), startedAt: null });
      waitingForResult.add(u);
      if (p.kind === 'exercise') nextSubmit[u] = null;
      else scheduleNext(u, t);
    }
    dispatch(now);
    if (now >= nextTick) {
      scale(now);
      dispatch(now);
      nextTick = now + TICK_MS;
    }
  }
  const end = Math.max(now, DAY_MS);
  // Always-on GPUs bill the whole day; autoscaled ones until stopped (or the end of the day).
  const billed = gpus.reduce((s, g) => s + Math.min(g.stoppedAt ?? end, end) - g.requestedAt, 0);
  return { gpuHours: billed / 3_600_000, waitsS: waits, starts };
}

/**
 * The control plane's defaults (docs/configuration.md), read from the config schema so the figures
 * follow them; at most 2 GPUs like the baseline.
 */
export const DEFAULT_POLICY: PoolPolicy = { ...policyFromConfig(loadConfig({})), maxWorkers: 2 };

export const RUNS: PolicyRun[] = [
  { name: 'always_on_2', policy: null, alwaysOn: 2 },
  { name: 'auto_defaults', policy: DEFAULT_POLICY },
  { name: 'auto_eager', policy: { ...DEFAULT_POLICY, jobsPerWorker: 4 } },
  { name: 'auto_quick_idle', policy: { ...DEFAULT_POLICY, jobsPerWorker: 4, idleMs: 120_000 } },
  { name: 'auto_max3', policy: { ...DEFAULT_POLICY, maxWorkers: 3 } },
  { name: 'auto_min1', policy: { ...DEFAULT_POLICY, minWorkers: 1 } },
  { name: 'auto_warm_before_exercises', policy: DEFAULT_POLICY, warmBeforeExercises: 2 },
];

const SEEDS = 20;

export async function benchAutoscale(): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  let baseHours = 0;
  let baseP95 = 0;
  const rows: string[] = [];
  for (const run of RUNS) {
    const days = Array.from({ length: SEEDS }, (_, s) => simulateDay(run, 1000 + s));
    const hours = days.reduce((s, d) => s + d.gpuHours, 0) / SEEDS;
    const waits = days.flatMap((d) => d.waitsS);
    const p50 = percentile(waits, 50);
    const p95 = percentile(waits, 95);
    if (run.policy === null) {
      baseHours = hours;
      baseP95 = p95;
    }
    const saved = baseHours > 0 ? (1 - hours / baseHours) * 100 : 0;
    out[`${run.name}.gpu_hours`] = round(hours, 2);
    out[`${run.name}.wait_p50_s`] = round(p50, 1);
    out[`${run.name}.wait_p95_s`] = round(p95, 1);
    if (run.policy) {
      out[`${run.name}.gpu_hours_saved_pct`] = round(saved, 1);
      out[`${run.name}.p95_minus_always_on_s`] = round(p95 - baseP95, 1);
      out[`${run.name}.starts_per_day`] = round(days.reduce((s, d) => s + d.starts, 0) / SEEDS, 1);
    }
    rows.push(
      `| ${run.name} | ${hours.toFixed(2)} | ${run.policy ? `${saved.toFixed(0)} %` : '–'} | ${p50.toFixed(0)} s | ${p95.toFixed(0)} s | ${(waits.length / SEEDS).toFixed(0)} |`,
    );
  }
  console.error(
    `\nautoscale: ${PARTICIPANTS} participants, 8 h, ${SEEDS} seeded days, starts ${START_DELAY_MS[0] / 1000}-${START_DELAY_MS[1] / 1000} s\n` +
      '| policy | GPU h/day | saved | wait p50 | wait p95 | jobs/day |\n| --- | --- | --- | --- | --- | --- |\n' +
      rows.join('\n') +
      '\n',
  );
  return out;
}

const round = (v: number, d: number) => Math.round(v * 10 ** d) / 10 ** d;
