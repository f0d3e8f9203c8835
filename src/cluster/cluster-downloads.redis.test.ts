/**
 * Model downloads and lost-worker alerts across control-plane processes: complete control planes
 * (real HTTP servers) on one real redis-server store, each with its own RedisClusterBus on that
 * Redis, and scripted worker agents on real WebSockets.
 */
import { createServer, type Server } from 'node:http';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { RedisClusterBus } from './redis-cluster-bus.js';
import { defaultSettings } from '../store/index.js';
import { openRedisStore } from '../store/redis/redis-store.js';
import type { ModelDownloadView } from '../admin/view-types.js';
import type { WorkerDirectoryOptions } from './worker-directory.js';
import {
  API_TOKEN,
  TestAgent,
  startControlPlane,
  type ControlPlane,
} from '../../test/support/worker-hub-kit.js';

const redisUrl = inject('redisUrl');
const planes: ControlPlane[] = [];
const agents: TestAgent[] = [];
const servers: Server[] = [];
const auth = { authorization: `Bearer ${API_TOKEN}`, 'content-type': 'application/json' };
/** Short refresh, TTL and grace, so that a killed process's workers expire within a test. */
const PRESENCE: WorkerDirectoryOptions = {
  refreshMs: 200,
  ttlMs: 1200,
  minIntervalMs: 20,
  lostGraceMs: 1000,
};

afterEach(async () => {
  for (const a of agents.splice(0)) await a.close();
  for (const cp of planes.splice(0)) await cp.close();
  for (const s of servers.splice(0)) await new Promise((r) => s.close(r));
});

async function until<T>(
  fn: () => Promise<T | null | undefined | false> | T | null | undefined | false,
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

function newPrefix(): string {
  return `test:cd:${process.pid}:${Math.random().toString(36).slice(2)}:`;
}

/** One process: its own RedisClusterBus, the shared store under `prefix`. */
async function plane(
  prefix: string,
  processId: string,
  env: Record<string, string> = {},
): Promise<ControlPlane> {
  const cluster = await RedisClusterBus.open({ url: redisUrl, prefix, processId });
  const cp = await startControlPlane(env, {
    openStore: (config) =>
      openRedisStore({ url: redisUrl, defaults: defaultSettings(config), keyPrefix: prefix }),
    services: { cluster, presence: PRESENCE, commandTimeoutMs: 3000 },
  });
  planes.push(cp);
  return cp;
}

async function register(cp: ControlPlane, token: string, name: string, models = true): Promise<TestAgent> {
  const { agent } = await TestAgent.register(cp.wsUrl, token, {
    name,
    prefetch: 0,
    ...(models ? { modelDownloads: true, downloads: [] } : {}),
  });
  agents.push(agent);
  return agent;
}

async function downloadsOn(cp: ControlPlane): Promise<ModelDownloadView[]> {
  const res = await fetch(`${cp.url}/api/v1/models/downloads`, { headers: auth });
  expect(res.status).toBe(200);
  return ((await res.json()) as { downloads: ModelDownloadView[] }).downloads;
}

async function listed(cp: ControlPlane, ids: string[]): Promise<void> {
  await until(
    // Online (registered: the hello is done) and taking downloads, as that process's snapshot says.
    () =>
      ids.every((id) =>
        cp.services.workerDirectory.online().some((w) => w.id === id && w.modelDownloads === true),
      ),
    `${ids.join(', ')} listed on ${cp.services.cluster.processId} as taking downloads`,
  );
}

describe('model downloads across processes (real Redis)', () => {
  it('a download asked of A reaches the worker on B; B’s progress is shown on A (and on a later C)', async () => {
    const prefix = newPrefix();
    const a = await plane(prefix, 'A');
    const b = await plane(prefix, 'B');
    const agent = await register(b, await b.token('gpu-b'), 'one');
    await listed(a, ['gpu-b:one']);

    const res = await fetch(`${a.url}/api/v1/models/downloads`, {
      method: 'POST',
      headers: auth,
      body: JSON.stringify({
        url: 'https://models.example.org/sd/model.safetensors?sig=secret',
        folder: 'checkpoints',
        token: 'hf_secret_token',
        workers: ['gpu-b:one'],
      }),
    });
    expect(res.status).toBe(202);
    const [started] = ((await res.json()) as { downloads: ModelDownloadView[] }).downloads;
    expect(started).toMatchObject({ workerId: 'gpu-b:one', state: 'queued', withToken: true });
    // The worker on B gets the URL as given and the token (they crossed Redis, never shown).
    const sent = await agent.next('model_download');
    expect(sent).toMatchObject({
      downloadId: started!.id,
      url: 'https://models.example.org/sd/model.safetensors?sig=secret',
      token: 'hf_secret_token',
      filename: 'model.safetensors',
    });
    expect((await downloadsOn(a)).map((d) => d.id)).toEqual([started!.id]);

    agent.send({
      type: 'model_download_progress',
      downloadId: started!.id,
      state: 'downloading',
      received: 500,
      total: 2000,
    });
    const onA = await until(async () => {
      const [d] = await downloadsOn(a);
      return d?.state === 'downloading' && d.received === 500 ? d : null;
    }, 'B’s progress on A');
    expect(onA).toMatchObject({ total: 2000, url: 'https://models.example.org/sd/model.safetensors' });
    expect(JSON.stringify(onA)).not.toContain('secret');

    agent.send({
      type: 'model_download_progress',
      downloadId: started!.id,
      state: 'done',
      received: 2000,
      total: 2000,
      sha256: 'a'.repeat(64),
    });
    await until(async () => (await downloadsOn(a))[0]?.state === 'done', 'done on A');
    // A process started later asks for the others' records.
    const c = await plane(prefix, 'C');
    await until(async () => (await downloadsOn(c))[0]?.state === 'done', 'the record on C');
    expect(await downloadsOn(c)).toEqual(await downloadsOn(a));
  });

  it('`workers: all` on A reaches the workers of A and B; a cancel on A reaches B’s worker', async () => {
    const prefix = newPrefix();
    const a = await plane(prefix, 'A');
    const b = await plane(prefix, 'B');
    const onA = await register(a, await a.token('gpu-a'), 'one');
    const onB = await register(b, await b.token('gpu-b'), 'two');
    await register(b, await b.token('gpu-n'), 'plain', false); // no --models-dir: not a target
    await listed(a, ['gpu-a:one', 'gpu-b:two']);

    const res = await fetch(`${a.url}/api/v1/models/downloads`, {
      method: 'POST',
      headers: auth,
      body: JSON.stringify({ url: 'https://models.example.org/lora.safetensors', folder: 'loras' }),
    });
    expect(res.status).toBe(202);
    const downloads = ((await res.json()) as { downloads: ModelDownloadView[] }).downloads;
    expect(downloads.map((d) => d.workerId).sort()).toEqual(['gpu-a:one', 'gpu-b:two']);
    await onA.next('model_download');
    const toB = await onB.next('model_download');
    const idB = downloads.find((d) => d.workerId === 'gpu-b:two')!.id;
    expect(toB.downloadId).toBe(idB);
    await until(async () => (await downloadsOn(b)).length === 2, 'both records on B');

    const cancel = await fetch(`${a.url}/api/v1/models/downloads/${idB}`, {
      method: 'DELETE',
      headers: { authorization: auth.authorization },
    });
    expect(cancel.status).toBe(200);
    expect(await cancel.json()).toMatchObject({ id: idB, cancelRequested: true });
    expect(await onB.next('model_download_cancel')).toMatchObject({ downloadId: idB });
    onB.send({
      type: 'model_download_progress',
      downloadId: idB,
      state: 'cancelled',
      received: 0,
      total: null,
    });
    await until(
      async () => (await downloadsOn(a)).find((d) => d.id === idB)?.state === 'cancelled',
      'cancelled on A',
    );

    // A worker that takes no downloads, named on A while connected to B: refused as on one process.
    const refused = await fetch(`${a.url}/api/v1/models/downloads`, {
      method: 'POST',
      headers: auth,
      body: JSON.stringify({
        url: 'https://models.example.org/vae.safetensors',
        folder: 'vae',
        workers: ['gpu-n:plain'],
      }),
    });
    expect(refused.status).toBe(409);
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('NO_MODEL_WORKER');

    // The workshop's model list changed on A: B's dashboard is told to read it again.
    const announced: string[] = [];
    b.services.models.on('workshop', (origin) => announced.push(origin));
    const put = await fetch(`${a.url}/api/v1/models/workshop`, {
      method: 'PUT',
      headers: auth,
      body: JSON.stringify({ models: [{ url: 'https://models.example.org/w.safetensors', folder: 'vae' }] }),
    });
    expect(put.status).toBe(200);
    await until(() => announced.includes('remote'), 'the workshop change announced on B');
    expect((await b.services.models.workshop()).map((m) => m.filename)).toEqual(['w.safetensors']);
  });
});

/** "kill -9" of a process: it stops alerting, publishing and answering at once, with no goodbye. */
async function kill(cp: ControlPlane): Promise<void> {
  await cp.app.admin.stop();
  await cp.services.workerDirectory.stop(false);
  cp.services.modelRelay.stop();
  await cp.services.cluster.close();
}

describe('a download whose process was killed (real Redis)', () => {
  it('is sent again by the process its worker reconnects to, and its progress is shown there', async () => {
    const prefix = newPrefix();
    const a = await plane(prefix, 'A');
    const b = await plane(prefix, 'B');
    const token = await b.token('gpu-b');
    const first = await register(b, token, 'one');
    await listed(a, ['gpu-b:one']);
    const res = await fetch(`${a.url}/api/v1/models/downloads`, {
      method: 'POST',
      headers: auth,
      body: JSON.stringify({
        url: 'https://models.example.org/big.safetensors?sig=s',
        folder: 'checkpoints',
        token: 'hf_token',
        workers: ['gpu-b:one'],
      }),
    });
    const [d] = ((await res.json()) as { downloads: ModelDownloadView[] }).downloads;
    await first.next('model_download');
    first.send({
      type: 'model_download_progress',
      downloadId: d!.id,
      state: 'downloading',
      received: 10,
      total: 99,
    });
    await until(async () => (await downloadsOn(a))[0]?.received === 10, 'progress on A');

    await kill(b);
    await first.terminate();
    // The agent restarted meanwhile and forgot the download: A sends it again, secret included.
    const again = await register(a, token, 'one');
    expect(await again.next('model_download')).toMatchObject({
      downloadId: d!.id,
      url: 'https://models.example.org/big.safetensors?sig=s',
      token: 'hf_token',
    });
    again.send({
      type: 'model_download_progress',
      downloadId: d!.id,
      state: 'done',
      received: 99,
      total: 99,
    });
    await until(async () => (await downloadsOn(a))[0]?.state === 'done', 'done on A');
  });
});

describe('the workers of a killed process (real Redis)', () => {
  it('one that comes back nowhere raises "worker lost" once across the cluster; one that reconnects does not', async () => {
    const posts: { event: string; details: { workerId?: string } }[] = [];
    const hook = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        posts.push(JSON.parse(body) as (typeof posts)[number]);
        res.end('ok');
      });
    });
    servers.push(hook);
    await new Promise<void>((r) => hook.listen(0, '127.0.0.1', r));
    const port = (hook.address() as { port: number }).port;
    const env = { ALERT_WEBHOOK_URL: `http://127.0.0.1:${port}/hook` };
    const prefix = newPrefix();
    const a = await plane(prefix, 'A', env);
    const b = await plane(prefix, 'B', env);
    const c = await plane(prefix, 'C', env);
    const token = await a.token('gpu-a');
    const lost = await register(a, token, 'one', false);
    const moving = await register(a, token, 'two', false);
    await until(
      () => [b, c].every((cp) => cp.services.workerDirectory.online().length === 2),
      'both workers of A listed on B and C',
    );

    // "kill -9" of A, whose sockets drop: one agent reconnects to B, the other never comes back.
    await kill(a);
    await lost.terminate();
    await moving.terminate();
    await register(b, token, 'two', false);

    const raised = (cp: ControlPlane) =>
      cp.app.admin.alerts.recent().filter((r) => r.event === 'worker_lost');
    // One surviving process raises it (the first to claim it) and posts it.
    await until(() => raised(b).length + raised(c).length > 0, 'the alert raised on B or C', 10_000);
    const [alert] = [...raised(b), ...raised(c)];
    expect(alert).toMatchObject({ delivery: 'sent', title: 'GPU worker one lost' });
    expect(posts.map((p) => [p.event, p.details.workerId])).toEqual([['worker_lost', 'gpu-a:one']]);
    // Both workers were looked at in the same turn (same expiry, same grace), and the other
    // survivor's claim can only fail: nothing more comes.
    expect(raised(b).length + raised(c).length).toBe(1);
    expect(b.services.workerDirectory.get('gpu-a:two')?.process).toBeUndefined();
  });
});
