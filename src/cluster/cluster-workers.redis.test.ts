/**
 * Several control-plane processes sharing one Redis store (issue #15, workers and the dashboard):
 * each test starts two or three complete control planes (real HTTP servers, a real redis-server
 * store under a private key prefix) joined by a MemoryClusterHub (one test by the real
 * RedisClusterBus), with scripted worker agents on real WebSockets.
 */
import { afterEach, describe, expect, inject, it } from 'vitest';
import WebSocket from 'ws';
import { MemoryClusterHub, type ClusterBus } from './cluster-bus.js';
import { RedisClusterBus } from './redis-cluster-bus.js';
import { defaultSettings } from '../store/index.js';
import { openRedisStore } from '../store/redis/redis-store.js';
import type { WorkerView } from '../dispatch/worker-registry.js';
import type { LiveMessage } from '../admin/view-types.js';
import { AuditLog } from '../admin/audit-log.js';
import { announceRevoke } from '../cli/commands/workers.js';
import { loadConfig } from '../config/load-config.js';
import {
  API_TOKEN,
  TestAgent,
  startControlPlane,
  type ControlPlane,
} from '../../test/support/worker-hub-kit.js';

const redisUrl = inject('redisUrl');
const planes: ControlPlane[] = [];
const agents: TestAgent[] = [];
const sockets: WebSocket[] = [];
const auth = { authorization: `Bearer ${API_TOKEN}` };
/** Short refresh and TTL, so "a killed process's workers vanish" is seen within a test. */
const PRESENCE = { refreshMs: 200, ttlMs: 1200, minIntervalMs: 20 };

afterEach(async () => {
  for (const s of sockets.splice(0)) s.terminate();
  for (const a of agents.splice(0)) await a.close();
  for (const cp of planes.splice(0)) await cp.close();
});

function newPrefix(): string {
  return `test:cw:${process.pid}:${Math.random().toString(36).slice(2)}:`;
}

async function plane(prefix: string, cluster: ClusterBus, commandTimeoutMs = 5000): Promise<ControlPlane> {
  const cp = await startControlPlane(
    {},
    {
      openStore: (config) =>
        openRedisStore({ url: redisUrl, defaults: defaultSettings(config), keyPrefix: prefix }),
      services: { cluster, presence: PRESENCE, commandTimeoutMs },
    },
  );
  planes.push(cp);
  return cp;
}

/** `n` control planes on one Redis store, joined by an in-process hub. */
async function cluster(
  n: number,
  commandTimeoutMs?: number,
): Promise<{ hub: MemoryClusterHub; cps: ControlPlane[] }> {
  const hub = new MemoryClusterHub();
  const prefix = newPrefix();
  const cps: ControlPlane[] = [];
  for (let i = 0; i < n; i++) cps.push(await plane(prefix, hub.join('ABC'[i]), commandTimeoutMs));
  return { hub, cps };
}

async function until<T>(
  fn: () => Promise<T | null | undefined | false> | T,
  what: string,
  ms = 5000,
): Promise<T> {
  const started = Date.now();
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() - started > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function workersOf(cp: ControlPlane): Promise<WorkerView[]> {
  const res = await fetch(`${cp.url}/api/v1/workers`, { headers: auth });
  expect(res.status).toBe(200);
  return ((await res.json()) as { workers: WorkerView[] }).workers;
}

async function register(cp: ControlPlane, token: string, name: string): Promise<TestAgent> {
  const { agent } = await TestAgent.register(cp.wsUrl, token, { name, prefetch: 0 });
  agents.push(agent);
  return agent;
}

async function openLive(cp: ControlPlane): Promise<LiveMessage[]> {
  const ws = new WebSocket(`${cp.url.replace('http', 'ws')}/admin/api/live`, { headers: auth });
  sockets.push(ws);
  const messages: LiveMessage[] = [];
  ws.on('message', (d) => messages.push(JSON.parse(d.toString()) as LiveMessage));
  await until(() => messages.length > 0, 'the live hello');
  return messages;
}

describe('workers across control-plane processes', () => {
  it('a worker connected to A is listed by B and C (API, status, dashboard) with the process holding it', async () => {
    const { cps } = await cluster(3);
    const [a, b, c] = cps as [ControlPlane, ControlPlane, ControlPlane];
    await register(a, await a.token('gpu-a'), 'one');
    await register(c, await a.token('gpu-c'), 'two');

    const seen = await until(async () => {
      const list = await workersOf(b);
      return list.length === 2 && list.every((w) => w.status === 'idle') ? list : null;
    }, 'both workers listed on B');
    expect(seen.map((w) => [w.id, w.status, w.process])).toEqual([
      ['gpu-a:one', 'idle', 'A'],
      ['gpu-c:two', 'idle', 'C'],
    ]);
    const one = await fetch(`${b.url}/api/v1/workers/gpu-a:one`, { headers: auth });
    expect(((await one.json()) as WorkerView).process).toBe('A');

    const status = await (await fetch(`${b.url}/api/v1/status`, { headers: auth })).json();
    expect(status).toMatchObject({ workers: { total: 2, usable: 2 } });

    const state = (await (await fetch(`${b.url}/admin/api/state`, { headers: auth })).json()) as {
      sections: {
        workers: { id: string; status: string; process: string }[];
        health: { cluster: { process: string; processes: number } };
      };
    };
    expect(state.sections.health.cluster).toEqual({ process: 'B', processes: 3 });
    expect(state.sections.workers.map((w) => [w.id, w.status, w.process])).toEqual([
      ['gpu-a:one', 'idle', 'A'],
      ['gpu-c:two', 'idle', 'C'],
    ]);

    // Prometheus: each process reports only the workers it holds, so a sum counts each once.
    const metrics = await Promise.all(cps.map(async (cp) => (await fetch(`${cp.url}/metrics`)).text()));
    const up = metrics.map((t) => t.split('\n').filter((l) => l.startsWith('comfy_multi_worker_up{')).length);
    expect(up).toEqual([1, 0, 1]);
  });

  it('a job held by a worker on A: a participant on B sees it next, then running, and a GPU online', async () => {
    const { cps } = await cluster(2);
    const [a, b] = cps as [ControlPlane, ControlPlane];
    await b.services.accounts.create('alice', 'participant', 'pw-alice-0123456789');
    const basic = `Basic ${Buffer.from('alice:pw-alice-0123456789').toString('base64')}`;
    const statusOnB = async () =>
      (await (
        await fetch(`${b.url}/alice/comfy-multi/status`, { headers: { authorization: basic } })
      ).json()) as {
        running: number;
        startingSoon: number;
        gpu: { workers: number };
      };
    const queueOnB = async () =>
      (await (await fetch(`${b.url}/alice/api/queue`, { headers: { authorization: basic } })).json()) as {
        queue_running: unknown[][];
        queue_pending: unknown[][];
      };
    const agent = await register(a, await a.token('gpu-a'), 'one');
    await until(async () => (await statusOnB()).gpu.workers === 1, 'the banner on B counts the GPU on A');
    const job = await a.services.queue.enqueue({
      user: 'alice',
      prompt: { '1': { class_type: 'EmptyImage', inputs: {} } },
    });
    const assign = await agent.next('assign');
    expect(assign.job.jobId).toBe(job.id);
    // Sent ahead, not started: B counts it as next, not running.
    await until(async () => (await statusOnB()).startingSoon === 1, 'B shows it starting soon');
    expect(await statusOnB()).toMatchObject({ running: 0, startingSoon: 1 });
    const q1 = await queueOnB();
    expect([q1.queue_running.length, q1.queue_pending.map((t) => t[1])]).toEqual([0, [job.id]]);
    expect(b.services.workerDirectory.holdersOf(job.id)[0]!.worker.process).toBe('A');

    agent.send({ type: 'job_started', jobId: job.id, attempt: assign.job.attempt });
    await until(async () => (await statusOnB()).running === 1, 'B shows it running');
    const q2 = await queueOnB();
    expect([q2.queue_running.map((t) => t[1]), q2.queue_pending.length]).toEqual([[job.id], 0]);
  });

  it('drain and undrain from B reach the worker on A; the HTTP answer is A’s result', async () => {
    const { cps } = await cluster(2);
    const [a, b] = cps as [ControlPlane, ControlPlane];
    const agent = await register(a, await a.token('gpu-a'), 'one');
    await until(async () => (await workersOf(b)).length === 1, 'the worker listed on B');

    const res = await fetch(`${b.url}/api/v1/workers/gpu-a:one/drain`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify({ draining: true }),
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({
      id: 'gpu-a:one',
      draining: true,
      status: 'draining',
      process: 'A',
    });
    expect(await agent.next('drain')).toMatchObject({ draining: true });
    expect(a.services.workers.get('gpu-a:one')!.draining).toBe(true);
    // The dashboard's action on B (Bearer: no CSRF header needed), undraining.
    const undrain = await fetch(`${b.url}/admin/api/workers/gpu-a:one/drain`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify({ draining: false }),
    });
    expect(undrain.status).toBe(200);
    expect(await undrain.json()).toMatchObject({ draining: false, status: 'idle' });
    expect(await agent.next('drain')).toMatchObject({ draining: false });
    await until(async () => (await workersOf(b))[0]?.draining === false, 'B lists it undrained');
    // Both actions are in the audit log, on every process.
    const actions = (await a.services.audit.recent(10)).map((e) => e.action);
    expect(actions).toEqual(expect.arrayContaining(['worker.drain', 'worker.undrain']));

    // No such worker anywhere: the usual 404.
    const none = await fetch(`${b.url}/api/v1/workers/gpu-a:nope/drain`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: '{}',
    });
    expect(none.status).toBe(404);
    expect(((await none.json()) as { error: { code: string } }).error.code).toBe('WORKER_NOT_FOUND');
  });

  it('a command sent on a stale view is forwarded once to the process now holding the worker', async () => {
    const { cps } = await cluster(3);
    const [a, b, c] = cps as [ControlPlane, ControlPlane, ControlPlane];
    const token = await a.token('gpu-a');
    const first = await register(a, token, 'one');
    await until(async () => (await workersOf(b)).length === 1, 'listed on B');
    // B stops hearing snapshots: its directory keeps saying A holds the worker.
    await b.services.workerDirectory.stop(false);
    await first.close();
    const { agent: moved } = await TestAgent.register(c.wsUrl, token, { name: 'one', prefetch: 0 });
    agents.push(moved);
    await until(() => a.services.workerDirectory.processOf('gpu-a:one') === 'C', 'A knows it moved to C');
    expect(b.services.workerDirectory.processOf('gpu-a:one')).toBe('A');
    const view = await b.services.workerCommands.drain('gpu-a:one', true);
    expect(view).toMatchObject({ process: 'C', connected: true, draining: true });
    expect(await moved.next('drain')).toMatchObject({ draining: true });
  });

  it('a drained worker that reconnects to another process stays drained', async () => {
    const { cps } = await cluster(2);
    const [a, b] = cps as [ControlPlane, ControlPlane];
    const token = await a.token('gpu-a');
    const first = await register(a, token, 'one');
    await until(async () => (await workersOf(b)).length === 1, 'listed on B');
    await b.services.workerCommands.drain('gpu-a:one', true);
    await first.next('drain');
    await until(async () => (await workersOf(b))[0]?.draining === true, 'B sees the drain');
    await first.close();
    const { agent: second, welcome } = await TestAgent.register(b.wsUrl, token, { name: 'one', prefetch: 0 });
    agents.push(second);
    expect(welcome.workerId).toBe('gpu-a:one');
    expect(await second.next('drain')).toMatchObject({ draining: true });
    // Nothing is given to it.
    await b.services.queue.enqueue({
      user: 'alice',
      prompt: { '1': { class_type: 'EmptyImage', inputs: {} } },
    });
    expect(await second.none('assign', 300)).toBe(true);
  });

  it('a token revoked on B closes its worker’s socket on A with 4004 at once', async () => {
    const { cps } = await cluster(2);
    const [a, b] = cps as [ControlPlane, ControlPlane];
    const agent = await register(a, await a.token('gpu-r'), 'one');
    await until(async () => (await workersOf(b)).length === 1, 'listed on B');
    expect(await b.services.workerTokens.revoke('gpu-r')).toBe(true);
    await b.services.workerCommands.tokenRevoked('gpu-r');
    // The agent sends no heartbeat here: only the announced revoke can close it.
    expect(await Promise.race([agent.closed, new Promise((r) => setTimeout(() => r('open'), 3000))])).toBe(
      4004,
    );
    await until(async () => (await workersOf(b))[0]?.connected === false, 'B shows it offline');
  });

  it('an audit entry and a broadcast made on A reach B’s live dashboard', async () => {
    const { hub, cps } = await cluster(2);
    const [a, b] = cps as [ControlPlane, ControlPlane];
    const messages = await openLive(b);
    await a.services.audit.record({
      by: 'teacher',
      action: 'queue.pause',
      target: null,
      details: {},
      ok: true,
    });
    await until(
      () =>
        messages.some(
          (m) =>
            m.type === 'patch' &&
            m.sections.audit?.some((e) => e.action === 'queue.pause' && e.by === 'teacher'),
        ),
      'the audit entry in B’s live feed',
    );
    const set = await fetch(`${a.url}/admin/api/broadcast`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify({ message: 'Break until 11:00' }),
    });
    expect(set.status).toBe(200);
    await until(
      () => messages.some((m) => m.type === 'patch' && m.sections.broadcast?.message === 'Break until 11:00'),
      'the broadcast in B’s live feed',
    );
    // A message B missed (here: recorded by a log nobody forwards) is read again after a reconnect.
    const unforwarded = new AuditLog(a.store);
    await unforwarded.record({ by: 'teacher', action: 'queue.resume', target: null, details: {}, ok: true });
    expect((await b.services.audit.recent(5)).map((e) => e.action)).not.toContain('queue.resume');
    hub.resyncAll();
    await until(
      () =>
        messages.some(
          (m) => m.type === 'patch' && m.sections.audit?.some((e) => e.action === 'queue.resume'),
        ),
      'the missed entry in B’s live feed after the resync',
    );
    // The participants' banner on B (it reads the shared store).
    await b.services.accounts.create('alice', 'participant', 'pw-alice-0123456789');
    const basic = `Basic ${Buffer.from('alice:pw-alice-0123456789').toString('base64')}`;
    const banner = await fetch(`${b.url}/alice/comfy-multi/status`, { headers: { authorization: basic } });
    expect(((await banner.json()) as { broadcast: { message: string } }).broadcast.message).toBe(
      'Break until 11:00',
    );
  });

  it('a participant’s ComfyUI tab open on A counts as online on B', async () => {
    const { cps } = await cluster(2);
    const [a, b] = cps as [ControlPlane, ControlPlane];
    await a.services.accounts.create('alice', 'participant', 'pw-alice-0123456789');
    const basic = `Basic ${Buffer.from('alice:pw-alice-0123456789').toString('base64')}`;
    const messages = await openLive(b);
    const tab = new WebSocket(`${a.url.replace('http', 'ws')}/alice/ws`, {
      headers: { authorization: basic },
    });
    sockets.push(tab);
    await new Promise((resolve, reject) => {
      tab.once('open', resolve);
      tab.once('error', reject);
    });
    await until(
      () =>
        messages.some(
          (m) =>
            m.type === 'patch' && m.sections.participants?.some((p) => p.user === 'alice' && p.online === 1),
        ),
      'alice online on B’s dashboard',
    );
    const status = (await (await fetch(`${b.url}/api/v1/status`, { headers: auth })).json()) as {
      participants: { onlineUsers: string[] };
    };
    expect(status.participants.onlineUsers).toEqual(['alice']);
    tab.close();
    await until(() => b.services.connections.tabsOf('alice') === 0, 'alice offline on B');
  });

  it('the workers of a process killed without cleanup vanish from the others within the TTL', async () => {
    const { hub, cps } = await cluster(2, 300);
    const [a, b] = cps as [ControlPlane, ControlPlane];
    await register(a, await a.token('gpu-a'), 'one');
    await until(async () => (await workersOf(b)).length === 1, 'listed on B');
    // "kill -9": A stops talking (its bus leaves the hub) without saying goodbye.
    const busA = [...hub.buses].find((x) => x.processId === 'A')!;
    await busA.close();
    const killedAt = Date.now();
    // Until its snapshot expires B still lists the worker; a drain now gets no answer: 503.
    const lost = await fetch(`${b.url}/api/v1/workers/gpu-a:one/drain`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: '{}',
    });
    expect(lost.status).toBe(503);
    expect(((await lost.json()) as { error: { code: string } }).error.code).toBe('WORKER_UNREACHABLE');
    await until(async () => (await workersOf(b)).length === 0, 'the worker gone from B', 5000);
    // Not before its snapshot aged past the TTL (it did not say goodbye).
    expect(Date.now() - killedAt).toBeGreaterThanOrEqual(PRESENCE.ttlMs - PRESENCE.refreshMs - 100);
    expect(Date.now() - killedAt).toBeLessThan(PRESENCE.ttlMs + 2 * PRESENCE.refreshMs + 1000);
    // Its agent reconnects to B and is listed there.
    const token = await b.token('gpu-b');
    await register(b, token, 'two');
    expect((await workersOf(b)).map((w) => [w.id, w.process])).toEqual([['gpu-b:two', 'B']]);
  });

  it('a process that stops gracefully takes its workers off the others’ lists at once', async () => {
    const { cps } = await cluster(2);
    const [a, b] = cps as [ControlPlane, ControlPlane];
    await register(a, await a.token('gpu-a'), 'one');
    await until(async () => (await workersOf(b)).length === 1, 'listed on B');
    await a.services.workerDirectory.stop();
    expect(await workersOf(b)).toEqual([]);
  });
});

describe('over the real RedisClusterBus', () => {
  it('lists a worker of A on B and drains it from B', async () => {
    const prefix = newPrefix();
    const busA = await RedisClusterBus.open({ url: redisUrl, prefix, processId: 'A' });
    const busB = await RedisClusterBus.open({ url: redisUrl, prefix, processId: 'B' });
    const a = await plane(prefix, busA);
    const b = await plane(prefix, busB);
    const agent = await register(a, await a.token('gpu-a'), 'one');
    await until(async () => (await workersOf(b))[0]?.process === 'A', 'listed on B');
    const view = await b.services.workerCommands.drain('gpu-a:one', true);
    expect(view).toMatchObject({ draining: true, process: 'A' });
    expect(await agent.next('drain')).toMatchObject({ draining: true });
  });

  it('`comfy-multi workers token revoke` announces the revoke: the socket closes with 4004 at once', async () => {
    const prefix = newPrefix();
    const a = await plane(prefix, await RedisClusterBus.open({ url: redisUrl, prefix, processId: 'A' }));
    const agent = await register(a, await a.token('gpu-r'), 'one');
    expect(await a.services.workerTokens.revoke('gpu-r')).toBe(true);
    // What the CLI does after storing the revoke (its own short-lived bus on the same Redis).
    await announceRevoke(
      loadConfig({ DATA_DIR: a.dir, STORE: 'redis', REDIS_URL: redisUrl, REDIS_PREFIX: prefix }),
      'gpu-r',
    );
    // The agent sends no heartbeat: only the announcement can close it this soon.
    expect(await Promise.race([agent.closed, new Promise((r) => setTimeout(() => r('open'), 3000))])).toBe(
      4004,
    );
  });
});
