/**
 * The invariants of a workshop day, checked after the run from three independent sources: the
 * instructor API (every job's final state), the stand-ins' execution records (what really ran on
 * a GPU), the files on disk, and what each simulated participant saw.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import type { ExecutionRecord } from '../support/comfyui-standin/exec-log.js';
import type { JobView, RssSample } from './cluster.js';
import { GPU_LOSS, jobOfPrefixes, type FaultRecord } from './faults.js';
import type { Participant } from './participant.js';

export interface Invariant {
  name: string;
  ok: boolean;
  /** Violations found (0 when ok). */
  violations: number;
  detail: string;
  /** Up to 20 examples of what went wrong. */
  examples: string[];
}

export interface Execution {
  jobId: string;
  gpu: number;
  pid: number;
  start: number;
  end: number | null;
  outcome: string;
}

export interface MemoryFigures {
  samples: number;
  firstMb: number;
  lastMb: number;
  maxMb: number;
  /** Per control-plane life long enough to judge: median of the last minute minus median of the minute after warm-up. */
  growthAfterWarmupMb: number | null;
  /** How many minutes (after warm-up) of the process life with the largest growth the figure covers. */
  judgedMinutes: number;
  boundMb: number;
  maxBoundMb: number;
  /** Median RSS per minute since the first sample, with the control-plane life it belongs to. */
  perMinute: { minute: number; mb: number; life: number }[];
}

export interface CheckInput {
  jobs: JobView[];
  executions: (ExecutionRecord & { gpu: number })[];
  faults: FaultRecord[];
  participants: Participant[];
  filesDir: string;
  rss: RssSample[];
  rssGrowthBoundMb: number;
  rssMaxBoundMb: number;
  /** Jobs still pending or running when the drain gave up. */
  drained: boolean;
}

const TERMINAL = new Set(['completed', 'failed', 'cancelled']);
const EXPECTED_EVENT: Record<string, string> = {
  completed: 'execution_success',
  failed: 'execution_error',
  cancelled: 'execution_interrupted',
};

function invariant(
  name: string,
  examples: string[],
  detail: string,
  violations = examples.length,
): Invariant {
  return { name, ok: violations === 0, violations, detail, examples: examples.slice(0, 20) };
}

/** Pairs each stand-in's start and end records into executions, keyed by job id. */
export function executionsByJob(records: (ExecutionRecord & { gpu: number })[]): Map<string, Execution[]> {
  const open = new Map<string, Execution>();
  const byJob = new Map<string, Execution[]>();
  for (const r of records) {
    const key = `${r.gpu}:${r.pid}:${r.promptId}`;
    if (r.event === 'start') {
      const jobId = jobOfPrefixes(r.prefixes);
      if (!jobId) continue;
      const e: Execution = { jobId, gpu: r.gpu, pid: r.pid, start: r.at, end: null, outcome: 'killed' };
      open.set(key, e);
      (byJob.get(jobId) ?? byJob.set(jobId, []).get(jobId)!).push(e);
    } else {
      const e = open.get(key);
      if (!e) continue;
      e.end = r.at;
      e.outcome = r.outcome ?? 'unknown';
      open.delete(key);
    }
  }
  for (const list of byJob.values()) list.sort((a, b) => a.start - b.start);
  return byJob;
}

export interface ReRunFigures {
  executions: number;
  jobsExecutedMoreThanOnce: number;
  excused: number;
  afterFinish: number;
  unfinished: number;
}

function checkTerminal(input: CheckInput, byId: Map<string, JobView>): Invariant {
  const bad: string[] = [];
  for (const j of input.jobs) if (!TERMINAL.has(j.status)) bad.push(`${j.id} (${j.user}) is ${j.status}`);
  for (const p of input.participants) {
    for (const id of p.jobs.keys()) {
      const j = byId.get(id);
      if (!j) bad.push(`${id} was accepted for ${p.name} but the control plane does not know it`);
      else if (j.user !== p.name) bad.push(`${id} was accepted for ${p.name} but belongs to ${j.user}`);
    }
    // The participant's history must agree with the job's one final state.
    for (const [id, h] of Object.entries(p.finalHistory)) {
      const j = byId.get(id);
      const s = h.status?.status_str;
      if (j?.status === 'completed' && s !== 'success')
        bad.push(`${id}: completed, but ${p.name}'s history says ${s}`);
      if (j && j.status !== 'completed' && s === 'success')
        bad.push(`${id}: ${j.status}, but ${p.name}'s history says success`);
    }
  }
  const counts = countBy(input.jobs.map((j) => j.status));
  const detail = `${input.jobs.length} jobs: ${Object.entries(counts)
    .map(([k, v]) => `${v} ${k}`)
    .join(', ')}${input.drained ? '' : ' (drain timed out)'}`;
  return invariant('every accepted job ends in exactly one terminal state', bad, detail);
}

function checkReRuns(
  input: CheckInput,
  byJob: Map<string, Execution[]>,
  byId: Map<string, JobView>,
): { inv: Invariant; figures: ReRunFigures } {
  const excusedBy = new Map<string, FaultRecord[]>();
  for (const f of input.faults)
    if (GPU_LOSS.has(f.kind))
      for (const id of f.inFlight) (excusedBy.get(id) ?? excusedBy.set(id, []).get(id)!).push(f);
  const figures: ReRunFigures = {
    executions: 0,
    jobsExecutedMoreThanOnce: 0,
    excused: 0,
    afterFinish: 0,
    unfinished: 0,
  };
  const bad: string[] = [];
  for (const [jobId, list] of byJob) {
    figures.executions += list.length;
    if (list.length < 2) continue;
    figures.jobsExecutedMoreThanOnce++;
    const last = list[list.length - 1]!;
    const excuse = (excusedBy.get(jobId) ?? []).find((f) => f.at <= last.start);
    if (excuse) {
      figures.excused++;
      continue;
    }
    const finishedBefore = list.slice(0, -1).some((e) => e.outcome === 'completed');
    if (finishedBefore) figures.afterFinish++;
    else figures.unfinished++;
    const job = byId.get(jobId);
    const faultsDuring = input.faults
      .filter((f) => f.at >= (job ? Date.parse(job.createdAt) : list[0]!.start) && f.at <= last.start)
      .map((f) => (f.gpu === null ? f.kind : `${f.kind}(gpu${f.gpu})`));
    bad.push(
      `${jobId} (${job?.user ?? '?'}, ${job?.status ?? '?'}): ran ${list.length}× ` +
        list.map((e) => `gpu${e.gpu} ${e.outcome}`).join(' → ') +
        `${finishedBefore ? ' — after it had finished' : ''}; faults meanwhile: ${faultsDuring.join(', ') || 'none'}`,
    );
  }
  const detail =
    `${figures.executions} executions; ${figures.jobsExecutedMoreThanOnce} jobs ran more than once: ` +
    `${figures.excused} after their GPU died or froze (allowed), ${figures.afterFinish} again after finishing, ` +
    `${figures.unfinished} again without a GPU loss`;
  return { inv: invariant('no finished job executed again', bad, detail), figures };
}

function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((d) => d.isFile())
    .map((d) => relative(dir, join(d.parentPath, d.name)).split(sep).join('/'));
}

function checkOutputs(
  input: CheckInput,
  byJob: Map<string, Execution[]>,
  byId: Map<string, JobView>,
): Invariant {
  const bad: string[] = [];
  let files = 0;
  let orphansAfterLoss = 0;
  const cancelledLeftovers: string[] = [];
  const users = existsSync(input.filesDir) ? readdirSync(input.filesDir) : [];
  const listed = new Map<string, Set<string>>();
  for (const j of input.jobs) {
    const outs = j.outputs.filter((o) => o.type === 'output');
    if (j.status === 'completed' && outs.length === 0)
      bad.push(`${j.id} (${j.user}) completed without an output`);
    for (const o of outs) {
      const rel = [o.subfolder, o.filename].filter(Boolean).join('/');
      (listed.get(j.user) ?? listed.set(j.user, new Set()).get(j.user)!).add(rel);
      const path = join(input.filesDir, j.user, 'output', rel);
      if (!existsSync(path)) bad.push(`${j.id}: output ${rel} is missing from ${j.user}'s space`);
      else if (o.size !== undefined && statSync(path).size !== o.size)
        bad.push(`${j.id}: output ${rel} has ${statSync(path).size} bytes, the job says ${o.size}`);
    }
  }
  // Outputs carry ComfyUI's names (`bar_00003_.png`, not `<job>/…`): a file that no job lists
  // can be told apart only by its folder when it kept the job's own (temp, uncounted names).
  // Otherwise it may be excused only when its owner had a job that lost a GPU or was cancelled.
  const lossy = new Map<string, { lost: boolean; cancelled: boolean }>();
  for (const j of input.jobs) {
    const l = lossy.get(j.user) ?? { lost: false, cancelled: false };
    if ((byJob.get(j.id)?.length ?? 0) > 1) l.lost = true;
    if (j.status === 'cancelled') l.cancelled = true;
    lossy.set(j.user, l);
  }
  for (const user of users) {
    for (const rel of filesUnder(join(input.filesDir, user, 'output'))) {
      files++;
      if (listed.get(user)?.has(rel)) continue;
      const jobId = rel.split('/')[0]!;
      const owner = byId.get(jobId);
      if (owner && owner.user !== user) {
        bad.push(`${user}/output/${rel}: belongs to ${owner.user}'s job ${jobId}`);
        continue;
      }
      const otherUser = [...listed].find(([u, set]) => u !== user && set.has(rel));
      const excuse = owner
        ? { lost: (byJob.get(jobId)?.length ?? 0) > 1, cancelled: owner.status === 'cancelled' }
        : (lossy.get(user) ?? { lost: false, cancelled: false });
      // A second copy: fine only when an attempt died on its GPU after uploading.
      if (excuse.lost) orphansAfterLoss++;
      // Cancelled between the upload and the completion report: the cancel wins, the file stays
      // (in its owner's space, listed nowhere). Reported, not counted as a violation.
      else if (excuse.cancelled) cancelledLeftovers.push(`${user}/output/${rel}`);
      else if (otherUser) bad.push(`${user}/output/${rel}: an output of ${otherUser[0]}'s, not listed here`);
      else
        bad.push(
          `${user}/output/${rel}: not an output of any job${owner ? ` (${jobId} ${owner.status})` : ''}`,
        );
    }
  }
  const detail =
    `${files} output files in ${users.length} spaces; ${orphansAfterLoss} left by attempts lost with their GPU, ` +
    `${cancelledLeftovers.length} by jobs cancelled while their outputs were uploading (not counted)`;
  const inv = invariant('outputs exactly once, only in the owner\u2019s space', bad, detail);
  inv.examples.push(
    ...cancelledLeftovers.slice(0, 5).map((f) => `(note) ${f}: its job was cancelled after the upload`),
  );
  return inv;
}

function checkStreams(
  input: CheckInput,
  byId: Map<string, JobView>,
): { inv: Invariant; learned: Record<string, number> } {
  const bad: string[] = [];
  const learned: Record<string, number> = { event: 0, 'status-refresh': 0, reconnect: 0 };
  const conflicts: string[] = [];
  for (const p of input.participants) {
    for (const id of p.seenPromptIds) {
      const j = byId.get(id);
      if (!j) bad.push(`${p.name} saw prompt id ${id}, which is no job`);
      else if (j.user !== p.name) bad.push(`${p.name} saw ${j.user}'s prompt id ${id}`);
    }
    for (const j of input.jobs) {
      if (j.user !== p.name || j.status !== 'completed') continue;
      const mine = p.jobs.get(j.id);
      // A job accepted while the answer got lost (server killed mid-request) is unknown to the
      // participant until its history shows it; count it through the history like the frontend.
      const how = mine?.learned?.how;
      if (how) learned[how] = (learned[how] ?? 0) + 1;
      else if (mine)
        bad.push(`${p.name} never learned that ${j.id} completed (no event, no history refresh)`);
    }
    for (const job of p.jobs.values()) {
      const final = byId.get(job.id)?.status;
      const expected = final ? EXPECTED_EVENT[final] : undefined;
      const other = job.terminalEvents.filter((t) => t !== expected);
      if (other.length)
        conflicts.push(`${job.id} (${final}): ${p.name} got ${job.terminalEvents.join(', ')}`);
    }
  }
  const detail =
    `completed jobs learned live: ${learned.event}, through a status-triggered history refresh: ` +
    `${learned['status-refresh']}, after a reconnect: ${learned.reconnect}; ` +
    `${conflicts.length} jobs with a terminal event unlike their final state (not counted)`;
  const inv = invariant('every participant\u2019s event stream complete and nobody else\u2019s', bad, detail);
  inv.examples.push(...conflicts.slice(0, 5).map((c) => `(note) ${c}`));
  return { inv, learned };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)]! : 0;
}

export function memoryFigures(rss: RssSample[], boundMb: number, maxBoundMb: number): MemoryFigures {
  const mbs = rss.map((s) => s.mb);
  const lives = new Map<number, RssSample[]>();
  for (const s of rss) (lives.get(s.life) ?? lives.set(s.life, []).get(s.life)!).push(s);
  const WARMUP = 60_000;
  const WINDOW = 60_000;
  let growth: number | null = null;
  let judged = 0;
  for (const samples of lives.values()) {
    const t0 = samples[0]!.t;
    const t1 = samples[samples.length - 1]!.t;
    // Judge only a life that lasted warm-up + two windows.
    if (t1 - t0 < WARMUP + 2 * WINDOW) continue;
    const early = samples.filter((s) => s.t >= t0 + WARMUP && s.t < t0 + WARMUP + WINDOW).map((s) => s.mb);
    const late = samples.filter((s) => s.t > t1 - WINDOW).map((s) => s.mb);
    const g = median(late) - median(early);
    // The worst life, with its own length (not the longest life's).
    if (growth === null || g > growth) {
      growth = g;
      judged = (t1 - t0 - WARMUP) / 60_000;
    }
  }
  const perMinute: MemoryFigures['perMinute'] = [];
  const start = rss[0]?.t ?? 0;
  const buckets = new Map<number, RssSample[]>();
  for (const x of rss) {
    const minute = Math.floor((x.t - start) / 60_000);
    (buckets.get(minute) ?? buckets.set(minute, []).get(minute)!).push(x);
  }
  for (const [minute, xs] of buckets)
    perMinute.push({ minute, mb: round1(median(xs.map((x) => x.mb))), life: xs[xs.length - 1]!.life });
  return {
    perMinute,
    samples: rss.length,
    firstMb: round1(mbs[0] ?? 0),
    lastMb: round1(mbs[mbs.length - 1] ?? 0),
    maxMb: round1(Math.max(0, ...mbs)),
    growthAfterWarmupMb: growth === null ? null : round1(growth),
    judgedMinutes: round1(judged),
    boundMb,
    maxBoundMb,
  };
}

function checkMemory(m: MemoryFigures): Invariant {
  const bad: string[] = [];
  if (m.maxMb > m.maxBoundMb) bad.push(`control-plane RSS reached ${m.maxMb} MB (bound ${m.maxBoundMb} MB)`);
  if (m.growthAfterWarmupMb !== null && m.growthAfterWarmupMb > m.boundMb)
    bad.push(`RSS grew ${m.growthAfterWarmupMb} MB after warm-up (bound ${m.boundMb} MB)`);
  const detail =
    `RSS first ${m.firstMb} MB, last ${m.lastMb} MB, max ${m.maxMb} MB (bound ${m.maxBoundMb}); growth after a 1-min warm-up: ` +
    (m.growthAfterWarmupMb === null
      ? 'not judged (no control-plane life lasted 3 min)'
      : `${m.growthAfterWarmupMb} MB over ${m.judgedMinutes} min (bound ${m.boundMb} MB)`);
  return invariant('control-plane memory flat', bad, detail);
}

export interface CheckResult {
  invariants: Invariant[];
  reRuns: ReRunFigures;
  learned: Record<string, number>;
  memory: MemoryFigures;
}

export function runChecks(input: CheckInput): CheckResult {
  const byId = new Map(input.jobs.map((j) => [j.id, j]));
  const byJob = executionsByJob(input.executions);
  const reRuns = checkReRuns(input, byJob, byId);
  const streams = checkStreams(input, byId);
  const memory = memoryFigures(input.rss, input.rssGrowthBoundMb, input.rssMaxBoundMb);
  return {
    invariants: [
      checkTerminal(input, byId),
      reRuns.inv,
      checkOutputs(input, byJob, byId),
      streams.inv,
      checkMemory(memory),
    ],
    reRuns: reRuns.figures,
    learned: streams.learned,
    memory,
  };
}

function countBy(xs: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const x of xs) out[x] = (out[x] ?? 0) + 1;
  return out;
}

const round1 = (x: number) => Math.round(x * 10) / 10;
