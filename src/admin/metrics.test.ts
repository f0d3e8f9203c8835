import { afterEach, describe, expect, it } from 'vitest';
import {
  ENV_WORKER_TOKEN,
  PROMPT,
  TestAgent,
  startControlPlane,
  until,
  type ControlPlane,
} from '../../test/support/worker-hub-kit.js';
import type { Job } from '../store/types.js';

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

interface Family {
  type: string;
  help: string | null;
  samples: Sample[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

function parseValue(s: string): number {
  if (s === '+Inf') return Infinity;
  if (s === '-Inf') return -Infinity;
  if (s === 'NaN') return NaN;
  if (!/^-?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$/.test(s)) throw new Error(`bad value ${s}`);
  return Number(s);
}

function parseLabels(s: string): Record<string, string> {
  const out: Record<string, string> = {};
  let i = 0;
  while (i < s.length) {
    const eq = s.indexOf('=', i);
    if (eq < 0) throw new Error(`bad labels ${s}`);
    const name = s.slice(i, eq);
    if (!LABEL.test(name)) throw new Error(`bad label name ${name}`);
    if (s[eq + 1] !== '"') throw new Error(`unquoted label value in ${s}`);
    let j = eq + 2;
    let value = '';
    for (; j < s.length && s[j] !== '"'; j++) {
      if (s[j] === '\\') {
        const next = s[++j];
        if (next === 'n') value += '\n';
        else if (next === '\\' || next === '"') value += next;
        else throw new Error(`bad escape in ${s}`);
      } else value += s[j];
    }
    if (s[j] !== '"') throw new Error(`unterminated label value in ${s}`);
    if (name in out) throw new Error(`duplicate label ${name}`);
    out[name] = value;
    i = j + 1;
    if (s[i] === ',') i++;
    else if (i < s.length) throw new Error(`bad label separator in ${s}`);
  }
  return out;
}

/**
 * A strict reader of the Prometheus text exposition format 0.0.4: HELP and TYPE lines, samples with
 * escaped labels, each sample under the family its TYPE declared, histogram bucket rules.
 */
function parsePrometheus(text: string): Map<string, Family> {
  if (!text.endsWith('\n')) throw new Error('the exposition must end with a newline');
  const families = new Map<string, Family>();
  let current: string | null = null;
  const familyOf = (sample: string) => {
    if (families.has(sample)) return sample;
    for (const suffix of ['_bucket', '_sum', '_count', '_total']) {
      if (!sample.endsWith(suffix)) continue;
      const base = sample.slice(0, -suffix.length);
      if (families.has(base)) return base;
    }
    return null;
  };
  for (const line of text.slice(0, -1).split('\n')) {
    if (line === '') continue;
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
      if (!m) continue; // a plain comment
      const [, kind, name, rest] = m as unknown as [string, string, string, string];
      if (!NAME.test(name)) throw new Error(`bad metric name ${name}`);
      const f = families.get(name) ?? { type: 'untyped', help: null, samples: [] };
      if (kind === 'TYPE') {
        if (!TYPES.has(rest)) throw new Error(`bad type ${rest}`);
        if (f.samples.length > 0) throw new Error(`TYPE of ${name} after its samples`);
        f.type = rest;
      } else f.help = rest;
      families.set(name, f);
      current = name;
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)( -?\d+)?$/.exec(line);
    if (!m) throw new Error(`bad sample line: ${line}`);
    const name = m[1]!;
    const family = familyOf(name);
    if (!family) throw new Error(`sample ${name} has no TYPE/HELP`);
    if (family !== current) throw new Error(`sample ${name} is not grouped with its family ${family}`);
    families
      .get(family)!
      .samples.push({ name, labels: m[3] ? parseLabels(m[3]) : {}, value: parseValue(m[4]!) });
  }
  for (const [name, f] of families) {
    if (f.type !== 'histogram') continue;
    const groups = new Map<string, Sample[]>();
    for (const s of f.samples) {
      const { le: _le, ...rest } = s.labels;
      const key = JSON.stringify(rest);
      groups.set(key, [...(groups.get(key) ?? []), s]);
    }
    for (const samples of groups.values()) {
      const buckets = samples.filter((s) => s.name === `${name}_bucket`);
      const count = samples.find((s) => s.name === `${name}_count`);
      if (!count || !samples.some((s) => s.name === `${name}_sum`))
        throw new Error(`${name} lacks _sum or _count`);
      for (let i = 1; i < buckets.length; i++) {
        if (buckets[i]!.value < buckets[i - 1]!.value) throw new Error(`${name} buckets are not cumulative`);
      }
      const inf = buckets.find((b) => b.labels.le === '+Inf');
      if (!inf || inf.value !== count.value) throw new Error(`${name} +Inf bucket must equal _count`);
    }
  }
  return families;
}

function value(
  families: Map<string, Family>,
  family: string,
  sample: string,
  labels: Record<string, string> = {},
): number | undefined {
  return families
    .get(family)
    ?.samples.find((s) => s.name === sample && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    ?.value;
}

let cp: ControlPlane | undefined;
const agents: TestAgent[] = [];

afterEach(async () => {
  for (const a of agents.splice(0)) await a.close();
  await cp?.close();
  cp = undefined;
});

async function scrape(headers: Record<string, string> = {}): Promise<Map<string, Family>> {
  const res = await cp!.app.inject({ url: '/metrics', headers });
  expect(res.statusCode).toBe(200);
  expect(res.headers['content-type']).toBe('text/plain; version=0.0.4; charset=utf-8');
  return parsePrometheus(res.body);
}

describe('GET /metrics', () => {
  it('is valid Prometheus text, and its counters move when jobs run', async () => {
    cp = await startControlPlane({ MAX_RUNNING_PER_USER: '5' });
    const { queue } = cp.services;
    const before = await scrape();
    expect(before.get('comfy_multi_job_outcomes_total')?.type).toBe('counter');
    expect(before.get('comfy_multi_job_wait_seconds')?.type).toBe('histogram');
    expect(before.get('comfy_multi_job_run_seconds')?.type).toBe('histogram');
    expect(before.get('comfy_multi_jobs')?.type).toBe('gauge');
    expect(before.get('comfy_multi_process_resident_memory_bytes')?.type).toBe('gauge');
    expect(
      value(before, 'comfy_multi_job_outcomes_total', 'comfy_multi_job_outcomes_total', {
        outcome: 'completed',
      }),
    ).toBe(0);
    expect(value(before, 'comfy_multi_store_up', 'comfy_multi_store_up')).toBe(1);

    const jobs: Job[] = [];
    for (const user of ['alice', 'alice', 'bob', 'carol'])
      jobs.push(await queue.enqueue({ user, prompt: PROMPT }));
    let m = await scrape();
    expect(value(m, 'comfy_multi_jobs', 'comfy_multi_jobs', { status: 'pending' })).toBe(4);
    expect(
      value(m, 'comfy_multi_user_jobs', 'comfy_multi_user_jobs', { user: 'alice', status: 'pending' }),
    ).toBe(2);
    expect(value(m, 'comfy_multi_jobs_submitted_total', 'comfy_multi_jobs_submitted_total')).toBe(4);

    const first = (await queue.claim('w:1', []))!;
    const second = (await queue.claim('w:2', []))!;
    m = await scrape();
    expect(value(m, 'comfy_multi_jobs', 'comfy_multi_jobs', { status: 'running' })).toBe(2);
    expect(value(m, 'comfy_multi_job_wait_seconds', 'comfy_multi_job_wait_seconds_count')).toBe(2);

    await queue.complete(first.id, first.attempts, []);
    await queue.fail(second.id, second.attempts, { reason: 'execution_error', message: 'boom', nodeId: '1' });
    await queue.cancel(jobs.find((j) => j.id !== first.id && j.id !== second.id)!.id);
    const third = (await queue.claim('w:1', []))!;
    await queue.release(third.id, third.attempts);
    m = await scrape();
    expect(
      value(m, 'comfy_multi_job_outcomes_total', 'comfy_multi_job_outcomes_total', { outcome: 'completed' }),
    ).toBe(1);
    expect(
      value(m, 'comfy_multi_job_outcomes_total', 'comfy_multi_job_outcomes_total', {
        outcome: 'failed',
        reason: 'execution_error',
      }),
    ).toBe(1);
    expect(
      value(m, 'comfy_multi_job_outcomes_total', 'comfy_multi_job_outcomes_total', { outcome: 'cancelled' }),
    ).toBe(1);
    expect(value(m, 'comfy_multi_job_requeues_total', 'comfy_multi_job_requeues_total')).toBe(1);
    expect(
      value(m, 'comfy_multi_job_run_seconds', 'comfy_multi_job_run_seconds_count', { outcome: 'completed' }),
    ).toBe(1);
    expect(
      value(m, 'comfy_multi_job_run_seconds', 'comfy_multi_job_run_seconds_count', { outcome: 'failed' }),
    ).toBe(1);
    expect(value(m, 'comfy_multi_job_wait_seconds', 'comfy_multi_job_wait_seconds_count')).toBe(3);
    expect(value(m, 'comfy_multi_jobs', 'comfy_multi_jobs', { status: 'completed' })).toBe(1);
  });

  it('reports workers (up, busy, VRAM) and WebSocket clients', async () => {
    cp = await startControlPlane();
    const { agent } = await TestAgent.register(cp.wsUrl, ENV_WORKER_TOKEN, {
      name: 'gpu1',
      devices: [{ name: 'cuda:0 Test', type: 'cuda', vramTotal: 24e9, vramFree: 20e9 }],
    });
    agents.push(agent);
    await cp.services.queue.enqueue({ user: 'alice', prompt: PROMPT });
    const assign = await agent.next('assign');
    agent.send({ type: 'job_started', jobId: assign.job.jobId, attempt: assign.job.attempt });
    await until(
      async () =>
        value(await scrape(), 'comfy_multi_worker_busy', 'comfy_multi_worker_busy', {
          worker: 'envgpu:gpu1',
        }) === 1,
    );
    const m = await scrape();
    expect(value(m, 'comfy_multi_worker_up', 'comfy_multi_worker_up', { worker: 'envgpu:gpu1' })).toBe(1);
    expect(
      value(m, 'comfy_multi_worker_vram_total_bytes', 'comfy_multi_worker_vram_total_bytes', {
        worker: 'envgpu:gpu1',
      }),
    ).toBe(24e9);
    expect(
      value(m, 'comfy_multi_worker_vram_used_bytes', 'comfy_multi_worker_vram_used_bytes', {
        worker: 'envgpu:gpu1',
      }),
    ).toBe(4e9);
    expect(
      value(m, 'comfy_multi_websocket_clients', 'comfy_multi_websocket_clients', { kind: 'worker' }),
    ).toBe(1);
    await agent.terminate();
    await until(
      async () =>
        value(await scrape(), 'comfy_multi_worker_up', 'comfy_multi_worker_up', { worker: 'envgpu:gpu1' }) ===
        0,
    );
    expect(
      value(await scrape(), 'comfy_multi_websocket_clients', 'comfy_multi_websocket_clients', {
        kind: 'worker',
      }),
    ).toBe(0);
  });

  it('needs the Bearer METRICS_TOKEN when one is set', async () => {
    cp = await startControlPlane({ METRICS_TOKEN: 'metrics-token-0123456789' });
    const none = await cp.app.inject({ url: '/metrics' });
    expect(none.statusCode).toBe(401);
    expect(none.headers['www-authenticate']).toMatch(/^Bearer /);
    const wrong = await cp.app.inject({
      url: '/metrics',
      headers: { authorization: 'Bearer metrics-token-0123456780' },
    });
    expect(wrong.statusCode).toBe(401);
    expect(wrong.json().error.code).toBe('INVALID_TOKEN');
    await scrape({ authorization: 'Bearer metrics-token-0123456789' });
  });

  it('rejects malformed exposition text (the parser is strict)', () => {
    expect(() => parsePrometheus('# TYPE a counter\na_total 1')).toThrow(/newline/);
    expect(() => parsePrometheus('a 1\n')).toThrow(/no TYPE/);
    expect(() => parsePrometheus('# TYPE a gauge\na{x=1} 1\n')).toThrow(/unquoted/);
    expect(() => parsePrometheus('# TYPE a gauge\na one\n')).toThrow(/bad value/);
    expect(() =>
      parsePrometheus('# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n'),
    ).toThrow(/cumulative/);
  });
});
