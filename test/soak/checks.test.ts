/**
 * The soak's judgement on small hand-made cases: which re-runs are allowed (the job was in flight
 * on a GPU that died or froze) and which are not, and how memory growth is measured.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { ExecutionRecord } from '../support/comfyui-standin/exec-log.js';
import { executionsByJob, memoryFigures, runChecks, type CheckInput } from './checks.js';
import type { JobView, RssSample } from './cluster.js';
import type { FaultRecord } from './faults.js';

type Rec = ExecutionRecord & { gpu: number };

function ran(job: string, gpu: number, start: number, end: number | null, outcome = 'completed'): Rec[] {
  const promptId = `p-${job}-${gpu}-${start}`;
  const base = { promptId, number: 1, pid: 100 + gpu, gpu };
  const out: Rec[] = [{ ...base, event: 'start', at: start, prefixes: [`alice/${job}/ci`] }];
  if (end !== null)
    out.push({ ...base, event: 'end', at: end, outcome: outcome as ExecutionRecord['outcome'] });
  return out;
}

function job(id: string): JobView {
  return {
    id,
    user: 'alice',
    status: 'completed',
    attempts: 1,
    workerId: null,
    createdAt: new Date(0).toISOString(),
    startedAt: null,
    finishedAt: null,
    error: null,
    outputs: [],
  };
}

function fault(kind: FaultRecord['kind'], at: number, inFlight: string[]): FaultRecord {
  return { kind, gpu: 1, at, recoveredAt: at + 1, downMs: 1, inFlight };
}

function input(executions: Rec[], faults: FaultRecord[], jobs: JobView[]): CheckInput {
  return {
    jobs,
    executions,
    faults,
    participants: [],
    filesDir: '/nonexistent',
    rss: [],
    rssGrowthBoundMb: 64,
    rssMaxBoundMb: 512,
    drained: true,
  };
}

describe('soak checks', () => {
  it('pairs start and end records; a start without an end was killed', () => {
    const byJob = executionsByJob([...ran('a', 1, 10, 20), ...ran('a', 2, 30, null)]);
    expect(byJob.get('a')!.map((e) => [e.gpu, e.outcome])).toEqual([
      [1, 'completed'],
      [2, 'killed'],
    ]);
  });

  it('allows a re-run only for a job in flight on a GPU that died or froze', () => {
    const executions = [
      ...ran('lost', 1, 10, 20),
      ...ran('lost', 2, 40, 50),
      ...ran('again', 1, 10, 20),
      ...ran('again', 2, 40, 50),
      ...ran('once', 3, 10, 20),
    ];
    const faults = [fault('worker-kill', 25, ['lost']), fault('control-plane-kill', 25, ['again'])];
    const result = runChecks(input(executions, faults, [job('lost'), job('again'), job('once')]));
    const reRun = result.invariants.find((i) => i.name === 'no finished job executed again')!;
    expect(result.reRuns).toMatchObject({
      executions: 5,
      jobsExecutedMoreThanOnce: 2,
      excused: 1,
      afterFinish: 1,
    });
    expect(reRun.ok).toBe(false);
    expect(reRun.examples).toHaveLength(1);
    expect(reRun.examples[0]).toContain('again');
    expect(reRun.examples[0]).toContain('after it had finished');
  });

  it("finds outputs missing, unlisted or in another user's space; a cancelled job's leftover is only noted", () => {
    const dir = mkdtempSync(join(tmpdir(), 'soak-checks-'));
    try {
      const put = (user: string, rel: string) => {
        mkdirSync(join(dir, user, 'output', rel, '..'), { recursive: true });
        writeFileSync(join(dir, user, 'output', rel), 'png');
      };
      const ok = {
        ...job('ok'),
        outputs: [{ nodeId: '3', filename: 'ci_00001_.png', subfolder: 'ok', type: 'output', size: 3 }],
      };
      const missing = {
        ...job('missing'),
        outputs: [{ nodeId: '3', filename: 'ci_00001_.png', subfolder: 'missing', type: 'output' }],
      };
      const cancelled = { ...job('cancelled'), status: 'cancelled' };
      const bobs = {
        ...job('bobs'),
        user: 'bob',
        outputs: [{ nodeId: '3', filename: 'a.png', subfolder: 'bobs', type: 'output' }],
      };
      put('alice', 'ok/ci_00001_.png');
      put('alice', 'ok/ci_00002_.png'); // a second copy without a second execution
      put('alice', 'cancelled/ci_00001_.png');
      put('bob', 'bobs/a.png');
      put('bob', 'ok/ci_00001_.png'); // alice's job in bob's space
      put('bob', 'bobs_00007_.png'); // under ComfyUI's naming, listed by no job
      const result = runChecks({ ...input([], [], [ok, missing, cancelled, bobs]), filesDir: dir });
      const outputs = result.invariants.find((i) => i.name.startsWith('outputs'))!;
      expect(outputs.violations).toBe(4);
      expect(outputs.examples.join('\n')).toContain('bob/output/bobs_00007_.png: not an output of any job');
      expect(outputs.examples.join('\n')).toContain('missing from alice');
      expect(outputs.examples.join('\n')).toContain('ok/ci_00002_.png: not an output');
      expect(outputs.examples.join('\n')).toContain("bob/output/ok/ci_00001_.png: belongs to alice's job");
      expect(outputs.detail).toContain('1 by jobs cancelled while their outputs were uploading');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('judges memory growth per control-plane life, after a minute of warm-up', () => {
    const rss: RssSample[] = [];
    for (let t = 0; t <= 240_000; t += 2000) rss.push({ t, mb: 100 + t / 10_000, life: 0 });
    for (let t = 250_000; t <= 260_000; t += 2000) rss.push({ t, mb: 300, life: 1 });
    const m = memoryFigures(rss, 64, 512);
    // Life 0: the minute after warm-up (60–120 s) has median ≈ 109 MB, the last minute ≈ 121 MB.
    expect(m.growthAfterWarmupMb).toBeGreaterThan(10);
    expect(m.growthAfterWarmupMb).toBeLessThan(14);
    expect(m.maxMb).toBe(300);
    expect(m.judgedMinutes).toBe(3);
  });
});
