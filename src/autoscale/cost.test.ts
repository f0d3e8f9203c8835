/**
 * GPU cost per worker, UTC day and participant: the ledger's arithmetic (split at midnight,
 * priced per instance type), its persistence in the store, the CSV (RFC 4180, formula-safe), the
 * autoscaler attributing a real finished job to its participant, and the instructor-only
 * `GET /api/v1/autoscale/usage.csv`.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { startHarness, type Harness } from '../../test/support/app-harness.js';
import { API_TOKEN, ENV_WORKER_TOKEN, startControlPlane } from '../../test/support/worker-hub-kit.js';
import { runUsage } from '../cli/commands/usage.js';
import { modelFreePrompt } from '../../test/support/prompts.js';
import { CostLedger, costCsv, csvCell, splitByDay } from './cost.js';
import { commandProviderEnv } from '../../test/support/autoscale.js';

const H = 3_600_000;
const day0 = Date.UTC(2026, 11, 6);
const prices: Record<string, number> = { rtx4090: 0.7, a100: 2, manual: 0 };
const priceOf = (t: string) => prices[t] ?? 0;

describe('cost ledger', () => {
  it('splits spans at midnight UTC', () => {
    const parts: [string, number][] = [];
    splitByDay(day0 + 23 * H, day0 + 26 * H, (d, ms) => parts.push([d, ms / H]));
    expect(parts).toEqual([
      ['2026-12-06', 1],
      ['2026-12-07', 2],
    ]);
  });

  it('prices worker and participant rows by the instance type that ran them', () => {
    const l = new CostLedger(priceOf);
    l.addWorker('auto-a', 'rtx4090', day0 + 9 * H, day0 + 11 * H);
    l.addJob('alice', 'auto-a', 'rtx4090', day0 + 9.5 * H, day0 + 10 * H);
    l.addJob('alice', 'auto-a', 'rtx4090', day0 + 10 * H, day0 + 10.5 * H);
    l.addJob('alice', 'big', 'a100', day0 + 12 * H, day0 + 12.25 * H);
    l.addJob('bob', 'lab-pc', 'manual', day0 + 12 * H, day0 + 13 * H);
    const rows = l.rows(day0 + 14 * H, [{ name: 'auto-b', instanceType: 'a100', from: day0 + 13 * H }]);
    expect(rows).toEqual([
      {
        kind: 'worker',
        day: '2026-12-06',
        worker: 'auto-a',
        participant: '',
        instanceType: 'rtx4090',
        gpuSeconds: 7200,
        pricePerHour: 0.7,
        cost: 1.4,
      },
      {
        kind: 'worker',
        day: '2026-12-06',
        worker: 'auto-b',
        participant: '',
        instanceType: 'a100',
        gpuSeconds: 3600,
        pricePerHour: 2,
        cost: 2,
      },
      {
        kind: 'participant',
        day: '2026-12-06',
        worker: 'auto-a',
        participant: 'alice',
        instanceType: 'rtx4090',
        gpuSeconds: 3600,
        pricePerHour: 0.7,
        cost: 0.7,
      },
      {
        kind: 'participant',
        day: '2026-12-06',
        worker: 'big',
        participant: 'alice',
        instanceType: 'a100',
        gpuSeconds: 900,
        pricePerHour: 2,
        cost: 0.5,
      },
      {
        kind: 'participant',
        day: '2026-12-06',
        worker: 'lab-pc',
        participant: 'bob',
        instanceType: 'manual',
        gpuSeconds: 3600,
        pricePerHour: 0,
        cost: 0,
      },
    ]);
    expect(l.participants()).toEqual([
      { participant: 'alice', gpuSeconds: 4500, cost: 1.2 },
      { participant: 'bob', gpuSeconds: 3600, cost: 0 },
    ]);
  });

  it('is kept in the store: a restart does not lose the figures', async () => {
    const blobs = new Map<string, string>();
    const store = {
      getBlob: async (ns: string, k: string) => blobs.get(`${ns}/${k}`) ?? null,
      putBlob: async (ns: string, k: string, v: string) => void blobs.set(`${ns}/${k}`, v),
    };
    const a = new CostLedger(priceOf, store);
    a.addJob('alice', 'auto-a', 'rtx4090', day0, day0 + H);
    await a.save();
    const b = new CostLedger(priceOf, store);
    await b.load();
    expect(b.participants()).toEqual([{ participant: 'alice', gpuSeconds: 3600, cost: 0.7 }]);
  });
});

describe('CSV', () => {
  it('quotes as RFC 4180 says and defuses spreadsheet formulas', () => {
    expect(csvCell('plain')).toBe('plain');
    expect(csvCell('a,b')).toBe('"a,b"');
    expect(csvCell('say "hi"')).toBe('"say ""hi"""');
    expect(csvCell('two\nlines')).toBe('"two\nlines"');
    expect(csvCell('=HYPERLINK("http://x","y")')).toBe(`"'=HYPERLINK(""http://x"",""y"")"`);
    expect(csvCell('+1')).toBe("'+1");
    expect(csvCell('-cmd')).toBe("'-cmd");
    expect(csvCell('@SUM(A1)')).toBe("'@SUM(A1)");
    expect(csvCell(-1.5)).toBe('-1.5');
    const csv = costCsv([
      {
        kind: 'participant',
        day: '2026-12-06',
        worker: 'w',
        participant: '=1+1',
        instanceType: 't',
        gpuSeconds: 60,
        pricePerHour: 1,
        cost: 0.02,
      },
    ]);
    expect(csv).toBe(
      'kind,day,worker,participant,instance_type,gpu_seconds,price_per_hour,cost\r\n' +
        "participant,2026-12-06,w,'=1+1,t,60,1,0.02\r\n",
    );
  });
});

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

describe('GPU cost per participant through the autoscaler', () => {
  it('a finished job on a started worker is priced by its instance type and exported as CSV, instructors only', async () => {
    h = await startHarness({
      WORKER_TOKENS: 'auto:tok',
      ...commandProviderEnv('tok', {
        AUTOSCALE_INSTANCE_TYPE: 'rtx4090',
        AUTOSCALE_PRICE_PER_HOUR: '0.5',
        AUTOSCALE_PRICES: 'manual=3600',
        AUTOSCALE_INTERVAL_SECONDS: '3600',
      }),
    });
    const teacher = await h.addUser('teacher', 'instructor');
    const app = h.app;
    const get = (url: string, authorization: string) =>
      app.inject({ method: 'GET', url, headers: { authorization } });
    const alice = await h.addUser('alice');
    const q = h.services.queue;
    const job = await q.enqueue({ user: 'alice', prompt: modelFreePrompt() });
    // A worker started by hand ("manual", priced 3600/h = 1 per second here).
    const claimed = await q.claim('auto:@lab-pc', []);
    expect(claimed?.id).toBe(job.id);
    await new Promise((r) => setTimeout(r, 30));
    await q.complete(job.id, claimed!.attempts, []);

    const rows = h.services.autoscaler!.costRows();
    const row = rows.find((r) => r.kind === 'participant')!;
    expect(row).toMatchObject({
      participant: 'alice',
      worker: '@lab-pc',
      instanceType: 'manual',
      pricePerHour: 3600,
    });
    const fin = (await q.store.getJob(job.id))!;
    expect(row.cost).toBeCloseTo((fin.finishedAt! - fin.startedAt!) / 1000, 1);
    expect(h.services.autoscaler!.view().usage.participants).toMatchObject([{ participant: 'alice' }]);

    const res = await get('/api/v1/autoscale/usage.csv', teacher);
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/csv/);
    expect(res.headers['content-disposition']).toBe('attachment; filename="gpu-usage.csv"');
    const lines = res.body.split('\r\n');
    expect(lines[0]).toBe('kind,day,worker,participant,instance_type,gpu_seconds,price_per_hour,cost');
    expect(lines[1]).toMatch(/^participant,\d{4}-\d{2}-\d{2},'@lab-pc,alice,manual,\d+,3600,[\d.]+$/);

    const bad = await get('/api/v1/autoscale/usage.csv?day=yesterday', teacher);
    expect(bad.statusCode).toBe(400);
    const other = await get('/api/v1/autoscale/usage.csv?day=2000-01-01', teacher);
    expect(other.body.split('\r\n').filter(Boolean)).toHaveLength(1);
    const denied = await get('/api/v1/autoscale/usage.csv', alice);
    expect(denied.statusCode).toBe(403);

    const metrics = await get('/metrics', teacher);
    expect(metrics.body).toMatch(/comfy_multi_autoscale_participant_cost\{user="alice"\} [\d.]+/);
  });
});

describe('comfy-multi usage --csv', () => {
  it('prints the CSV of a running control plane; refused credentials exit 2', async () => {
    const cp = await startControlPlane(
      commandProviderEnv(ENV_WORKER_TOKEN, { AUTOSCALE_INTERVAL_SECONDS: '3600' }),
    );
    try {
      let out = '';
      let err = '';
      const io = { out: (s: string) => void (out += s), err: (s: string) => void (err += s) };
      expect(await runUsage({ csv: true, server: cp.url, token: API_TOKEN }, {}, io)).toBe(0);
      expect(out).toBe('kind,day,worker,participant,instance_type,gpu_seconds,price_per_hour,cost\r\n');
      expect(await runUsage({ csv: true, server: cp.url, token: 'wrong' }, {}, io)).toBe(2);
      expect(err).toMatch(/answered 401/);
      expect(await runUsage({ csv: true, server: cp.url, token: API_TOKEN, day: 'today' }, {}, io)).toBe(2);
    } finally {
      await cp.close();
    }
  });
});
