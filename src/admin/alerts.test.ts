import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import {
  ENV_WORKER_TOKEN,
  PROMPT,
  TestAgent,
  sleep,
  startControlPlane,
  until,
  type ControlPlane,
} from '../../test/support/worker-hub-kit.js';
import { AlertService, type AlertOptions } from './alerts.js';
import { MemoryClusterHub } from '../cluster/cluster-bus.js';
import type { WorkerEntry } from '../dispatch/worker-registry.js';

/** A real webhook receiver on 127.0.0.1 that records what it gets. */
interface Receiver {
  url: string;
  bodies: Record<string, unknown>[];
  /** HTTP status to answer with. */
  status: number;
  close(): Promise<void>;
}

async function startReceiver(): Promise<Receiver> {
  const r: Receiver = { url: '', bodies: [], status: 200, close: async () => {} };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      expect(req.method).toBe('POST');
      expect(req.headers['content-type']).toBe('application/json');
      r.bodies.push(JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>);
      res.writeHead(r.status, { 'content-type': 'text/plain' }).end('ok');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  r.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
  r.close = () => new Promise((resolve) => server.close(() => resolve()));
  return r;
}

let receiver: Receiver | undefined;
let cp: ControlPlane | undefined;
const agents: TestAgent[] = [];
const services: AlertService[] = [];

afterEach(async () => {
  for (const a of agents.splice(0)) await a.close();
  for (const s of services.splice(0)) await s.stop();
  await cp?.close();
  cp = undefined;
  await receiver?.close();
  receiver = undefined;
});

/** An AlertService on a control plane's queue and workers, with test-sized options. */
async function alertService(
  opts: Partial<AlertOptions> = {},
  once?: (key: string, ttlMs: number) => Promise<boolean>,
): Promise<AlertService> {
  cp ??= await startControlPlane();
  const s = new AlertService(
    { store: cp.store, queue: cp.services.queue, workers: cp.services.workers, ...(once ? { once } : {}) },
    {
      webhookUrl: receiver?.url,
      repeatMs: 60_000,
      stallMs: 200,
      diskMinFree: 1024 ** 3,
      dataDir: cp.dir,
      maxAttempts: 3,
      stallCheckMs: 50,
      diskCheckMs: 60_000,
      logger: pino({ level: 'silent' }),
      ...opts,
    },
  );
  services.push(s);
  return s;
}

describe('alerts', () => {
  it('posts one JSON body that Slack-compatible, ntfy and generic receivers accept', async () => {
    receiver = await startReceiver();
    const s = await alertService({ topic: 'workshop-alerts', publicUrl: 'https://workshop.example/' });
    const rec = await s.notify({
      event: 'disk_low',
      key: 'disk_low',
      severity: 'critical',
      title: 'Disk nearly full',
      message: 'Only 1.0 GB free.',
      details: { freeBytes: 1 },
    });
    expect(rec.delivery).toBe('sent');
    expect(receiver.bodies).toEqual([
      {
        text: '[comfy-multi] Disk nearly full: Only 1.0 GB free. https://workshop.example/admin/',
        title: 'comfy-multi: Disk nearly full',
        message: 'Only 1.0 GB free.',
        severity: 'critical',
        event: 'disk_low',
        details: { freeBytes: 1 },
        time: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
        topic: 'workshop-alerts',
        priority: 5,
        tags: ['rotating_light', 'comfy-multi'],
        click: 'https://workshop.example/admin/',
      },
    ]);
  });

  it('is rate-limited per key: repeats are counted and reported with the next alert', async () => {
    receiver = await startReceiver();
    let now = 1_000_000;
    const s = await alertService({ repeatMs: 60_000, clock: () => now });
    const alert = (key: string) => ({
      event: 'worker_lost' as const,
      key,
      severity: 'warning' as const,
      title: 'GPU worker lost',
      message: key,
      details: {},
    });
    expect((await s.notify(alert('worker_lost:a'))).delivery).toBe('sent');
    for (let i = 0; i < 5; i++) {
      now += 1000;
      expect((await s.notify(alert('worker_lost:a'))).delivery).toBe('suppressed');
    }
    expect((await s.notify(alert('worker_lost:b'))).delivery).toBe('sent'); // another worker: its own key
    now += 60_000;
    expect((await s.notify(alert('worker_lost:a'))).delivery).toBe('sent');
    expect(receiver.bodies.map((b) => b.message)).toEqual([
      'worker_lost:a',
      'worker_lost:b',
      'worker_lost:a (5 more like this since the last alert)',
    ]);
    expect(receiver.bodies[2]!.details).toEqual({ suppressedSinceLast: 5 });
    // Newest first.
    expect(s.recent().map((r) => r.delivery)).toEqual([
      'sent',
      'sent',
      ...Array(5).fill('suppressed'),
      'sent',
    ]);
  });

  /** Three processes' alert services on one cluster bus, posting to a fresh receiver. */
  async function threeProcesses() {
    const rx = (receiver = await startReceiver());
    const hub = new MemoryClusterHub();
    const procs = await Promise.all(
      [0, 1, 2].map(() => {
        const bus = hub.join();
        return alertService({}, (k, ms) => bus.once(k, ms));
      }),
    );
    return { rx, procs };
  }

  it('with several processes, each raises the alert but the webhook gets it once', async () => {
    const { rx, procs } = await threeProcesses();
    const lost = {
      event: 'worker_lost' as const,
      key: 'worker_lost:envgpu:gpu1',
      severity: 'warning' as const,
      title: 'GPU worker gpu1 lost',
      message: 'gone',
      details: {},
    };
    const recs = await Promise.all(procs.map((s) => s.notify(lost)));
    expect(rx.bodies).toHaveLength(1);
    expect(recs.map((r) => r.delivery).sort()).toEqual(['elsewhere', 'elsewhere', 'sent']);
    // Every dashboard still shows it.
    for (const s of procs) expect(s.recent()[0]).toMatchObject({ title: 'GPU worker gpu1 lost' });
  });

  it('a worker of a killed process is raised by the one survivor that claims it; none when Redis is out of reach', async () => {
    const { rx, procs } = await threeProcesses();
    // The worker as the killed process's last snapshot listed it.
    const worker = {
      id: 'envgpu:gpu1',
      name: 'gpu1',
      connectedAt: 1000,
      devices: [],
      held: new Map(),
      process: 'dead',
    } as unknown as WorkerEntry;
    await Promise.all(procs.map((s) => s.onOrphanLost({ worker, from: 'idle', to: 'offline' })));
    expect(rx.bodies.map((b) => [b.event, (b.details as { workerId: string }).workerId])).toEqual([
      ['worker_lost', 'envgpu:gpu1'],
    ]);
    expect(procs.map((s) => s.recent().length).sort()).toEqual([0, 0, 1]);
    // A process cut off from Redis cannot tell a lost worker from its own isolation: quiet.
    const cutOff = await alertService({}, () => Promise.reject(new Error('redis down')));
    await cutOff.onOrphanLost({ worker: { ...worker, id: 'envgpu:gpu2' }, from: 'busy', to: 'offline' });
    expect(cutOff.recent()).toEqual([]);
  });

  it('never throws when the receiver fails or is gone', async () => {
    receiver = await startReceiver();
    receiver.status = 500;
    const s = await alertService();
    const a = {
      event: 'test' as const,
      key: 'k1',
      severity: 'info' as const,
      title: 't',
      message: 'm',
      details: {},
    };
    expect((await s.notify(a)).delivery).toBe('failed');
    await receiver.close();
    expect((await s.notify({ ...a, key: 'k2' })).delivery).toBe('failed');
    receiver = undefined;
  });

  it('fires when a worker is lost, once per worker while it flaps', async () => {
    receiver = await startReceiver();
    cp = await startControlPlane({ ALERT_WEBHOOK_URL: receiver.url });
    for (let i = 0; i < 3; i++) {
      const { agent } = await TestAgent.register(cp.wsUrl, ENV_WORKER_TOKEN, { name: 'gpu1' });
      await until(() => cp!.app.admin.watcher && cp!.services.workers.online().length === 1);
      cp.app.admin.watcher.check();
      await agent.terminate();
      await until(() => cp!.services.workers.online().length === 0);
      cp.app.admin.watcher.check();
    }
    await until(() => receiver!.bodies.length >= 1, 3000, 'the alert');
    await sleep(200);
    expect(receiver.bodies).toHaveLength(1);
    expect(receiver.bodies[0]).toMatchObject({
      event: 'worker_lost',
      severity: 'warning',
      details: { workerId: 'envgpu:gpu1' },
    });
    expect(String(receiver.bodies[0]!.text)).toContain('GPU worker gpu1 lost');
    expect(cp.app.admin.alerts.recent().map((r) => r.delivery)).toEqual(['suppressed', 'suppressed', 'sent']);
    // Draining workers leaving is expected: no alert.
    const { agent } = await TestAgent.register(cp.wsUrl, ENV_WORKER_TOKEN, { name: 'gpu2' });
    cp.app.admin.watcher.check();
    cp.services.dispatcher.setDraining('envgpu:gpu2', true);
    cp.app.admin.watcher.check();
    await agent.terminate();
    await until(() => cp!.services.workers.online().length === 0);
    cp.app.admin.watcher.check();
    await sleep(100);
    expect(receiver.bodies).toHaveLength(1);
  });

  it('fires when a job fails on every attempt (worker lost each time), not for a ComfyUI error on the first', async () => {
    receiver = await startReceiver();
    cp = await startControlPlane({ ALERT_WEBHOOK_URL: receiver.url, MAX_ATTEMPTS: '2', LEASE_MS: '1000' });
    const { queue } = cp.services;
    // An ordinary ComfyUI error: shown on the dashboard, no alert.
    await queue.enqueue({ user: 'alice', prompt: PROMPT });
    const first = (await queue.claim('w:x', []))!;
    await queue.fail(first.id, first.attempts, { reason: 'execution_error', message: 'bad input' });
    // A job whose worker vanishes on both attempts.
    const job = await queue.enqueue({ user: 'bob', prompt: PROMPT });
    for (let attempt = 1; attempt <= 2; attempt++) {
      const claimed = (await queue.claim('w:x', []))!;
      expect(claimed.id).toBe(job.id);
      await sleep(1100);
      await queue.sweep();
    }
    expect((await cp.store.getJob(job.id))?.status).toBe('failed');
    await until(() => receiver!.bodies.length === 1, 3000, 'the alert');
    expect(receiver.bodies[0]).toMatchObject({
      event: 'job_failed',
      details: { jobId: job.id, user: 'bob', attempts: 2, reason: 'worker_lost' },
    });
  });

  it('fires when jobs wait with no usable worker for ALERT_STALL_MINUTES, and not while paused', async () => {
    receiver = await startReceiver();
    const s = await alertService({ stallMs: 300 });
    const { queue } = cp!.services;
    await queue.updateSettings({ paused: true });
    await queue.enqueue({ user: 'alice', prompt: PROMPT });
    s.start();
    await sleep(500);
    expect(receiver.bodies).toHaveLength(0);
    await queue.updateSettings({ paused: false });
    await until(() => receiver!.bodies.length === 1, 3000, 'the stall alert');
    expect(receiver.bodies[0]).toMatchObject({
      event: 'queue_stalled',
      severity: 'critical',
      details: { pending: 1 },
    });
    await sleep(300);
    expect(receiver.bodies).toHaveLength(1); // once per stall
  });

  it('fires when DATA_DIR is nearly full (checked with statfs)', async () => {
    receiver = await startReceiver();
    let free = 5 * 1024 ** 3;
    const s = await alertService({
      diskMinFree: 2 * 1024 ** 3,
      freeBytes: async () => ({ free, total: 100 * 1024 ** 3 }),
    });
    await s.checkDisk();
    expect(receiver.bodies).toHaveLength(0);
    free = 1024 ** 3;
    await s.checkDisk();
    await s.checkDisk();
    expect(receiver.bodies).toHaveLength(1);
    expect(receiver.bodies[0]).toMatchObject({
      event: 'disk_low',
      details: { freeBytes: 1024 ** 3, thresholdBytes: 2 * 1024 ** 3 },
    });
    // The real check reads the real file system.
    const real = await alertService({ diskMinFree: 1 });
    await real.checkDisk();
    expect(receiver.bodies).toHaveLength(1);
  });

  it('sends a test alert from the dashboard', async () => {
    receiver = await startReceiver();
    cp = await startControlPlane({ ALERT_WEBHOOK_URL: receiver.url, API_TOKENS: 'ops:ops-token-0123456789' });
    const res = await cp.app.inject({
      method: 'POST',
      url: '/admin/api/alerts/test',
      headers: { authorization: 'Bearer ops-token-0123456789' },
    });
    expect(res.json()).toEqual({ delivery: 'sent', webhook: true });
    expect(receiver.bodies[0]).toMatchObject({ event: 'test', severity: 'info' });
  });
});
