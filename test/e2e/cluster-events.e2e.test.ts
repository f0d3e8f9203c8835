/**
 * A participant's `/ws` across a `kill -9` of the process holding it (several processes sharing one
 * Redis): the worker is connected to process A (in this test process), the participant's socket to
 * B (a real `comfy-multi serve`), which is killed with SIGKILL while the worker streams progress.
 * The participant's page reconnects with the same clientId to C (in this test process) and gets
 * every event it missed: nothing lost, nothing twice on the new socket; events B handed in its last
 * moments may come a second time (the promise in docs/ARCHITECTURE.md).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { RecordingSocket } from '../support/gateway-kit.js';
import { defaultSettings } from '../../src/store/index.js';
import { openRedisStore } from '../../src/store/redis/redis-store.js';
import { Processes } from '../support/processes.js';
import { freePort } from '../support/redis-server.js';
import { startServe } from '../support/serve.js';
import { PROMPT, TestAgent, startControlPlane, until, type ControlPlane } from '../support/worker-hub-kit.js';

const redisUrl = inject('redisUrl');
const procs = new Processes();
const planes: ControlPlane[] = [];
const sockets: RecordingSocket[] = [];
const agents: TestAgent[] = [];
const dirs: string[] = [];

afterAll(async () => {
  for (const s of sockets) s.close();
  for (const a of agents) await a.close();
  await procs.killAll();
  for (const p of planes.reverse()) await p.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const USER = 'user001';
const PASSWORD = `pw-${USER}-0123456789`;
const auth = `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString('base64')}`;
const STEPS = 60;

async function participant(base: string, clientId: string): Promise<RecordingSocket> {
  const s = await RecordingSocket.open(`${base.replace('http', 'ws')}/${USER}/ws?clientId=${clientId}`, {
    authorization: auth,
  });
  sockets.push(s);
  return s;
}

/** The progress values of the job a socket got, in order. */
const values = (s: RecordingSocket, jobId: string) =>
  s
    .texts()
    .filter((m) => m.type === 'progress' && m.data.prompt_id === jobId)
    .map((m) => m.data.value as number);

describe('a /ws across a kill -9 of its process', () => {
  it('reconnecting elsewhere with the same clientId loses no event', async () => {
    const prefix = `test:e2e-events:${process.pid}:${Math.random().toString(36).slice(2)}:`;
    const env = { STORE: 'redis', REDIS_URL: redisUrl, REDIS_PREFIX: prefix };
    const open = () =>
      startControlPlane(env, {
        openStore: (config) =>
          openRedisStore({ url: redisUrl, defaults: defaultSettings(config), keyPrefix: prefix }),
      });
    const a = await open();
    planes.push(a);
    const c = await open();
    planes.push(c);
    await a.services.accounts.create(USER, 'participant', PASSWORD);

    const dir = mkdtempSync(join(tmpdir(), 'cm-e2e-events-'));
    dirs.push(dir);
    const port = await freePort();
    const b = await startServe(procs, {
      ...env,
      DATA_DIR: dir,
      HOST: '127.0.0.1',
      PORT: String(port),
      LOG_LEVEL: 'warn',
    }).catch((err: unknown) => {
      throw new Error(`${String(err)}\n${procs.logs()}`);
    });
    const bUrl = `http://127.0.0.1:${port}`;

    const { agent } = await TestAgent.register(a.wsUrl, await a.token('gpu-a'), { name: 'a1' });
    agents.push(agent);
    const first = await participant(bUrl, 'tab1');
    await first.waitFor((s) => s.texts().some((m) => m.type === 'status'));

    const job = await a.services.queue.enqueue({
      user: USER,
      prompt: PROMPT,
      metadata: { client_id: 'tab1' },
    });
    await agent.next('assign');
    const event = (type: string, data: Record<string, unknown>) =>
      agent.send({
        type: 'job_event',
        jobId: job.id,
        attempt: 1,
        event: { type, data: { ...data, prompt_id: job.id } },
      });
    event('execution_start', { timestamp: 1 });
    event('executing', { node: '1', display_node: '1' });
    let sent = 0;
    const stream = (async () => {
      for (let i = 1; i <= STEPS; i++) {
        event('progress', { value: i, max: STEPS, node: '1' });
        sent = i;
        await new Promise((r) => setTimeout(r, 25));
      }
    })();
    // Kill B while events stream through it.
    await first.waitFor((s) => values(s, job.id).length >= STEPS / 3, 20_000);
    procs.kill(b, 'SIGKILL');
    await b.exited;
    await stream;
    expect(sent).toBe(STEPS);
    event('execution_success', { timestamp: 2 });
    event('executing', { node: null });
    agent.send({ type: 'job_completed', jobId: job.id, attempt: 1, outputs: [] });
    await until(async () => (await a.store.getJob(job.id))?.status === 'completed', 10_000, 'completed');
    await a.services.events!.flushed();

    const before = values(first, job.id);
    expect(before.length).toBeLessThan(STEPS);
    const second = await participant(c.url, 'tab1');
    await second.waitFor(
      (s) => s.texts().some((m) => m.type === 'execution_success' && m.data.prompt_id === job.id),
      10_000,
    );
    const after = values(second, job.id);
    // In order and once each on the new socket; together with the old one, every step.
    expect(after).toEqual([...after].sort((x, y) => x - y));
    expect(new Set(after).size).toBe(after.length);
    const all = new Set([...before, ...after]);
    expect([...all].sort((x, y) => x - y)).toEqual(Array.from({ length: STEPS }, (_, i) => i + 1));
    // The replay starts where B's last saved cursor was: at most the last moments again.
    const again = after.filter((v) => before.includes(v));
    expect(again).toEqual(before.slice(before.length - again.length));
    const texts = second.texts().filter((m) => m.data?.prompt_id === job.id);
    expect(texts.at(-2)?.type).toBe('execution_success');
    expect(texts.at(-1)).toEqual({ type: 'executing', data: { node: null, prompt_id: job.id } });
  }, 120_000);
});
