/**
 * Three control planes sharing one real Redis (store, cluster bus, event log), as three `serve`
 * processes behind a load balancer: a scripted worker on process A, participants' `/ws` on B and
 * C. What a participant sees must not depend on which process their socket or the worker landed on.
 */
import { Redis } from 'ioredis';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { encodeBinaryFrame } from '../comfy/protocol.js';
import { RecordingSocket } from '../../test/support/gateway-kit.js';
import { defaultSettings } from '../store/index.js';
import { openRedisStore } from '../store/redis/redis-store.js';
import type { Job } from '../store/types.js';
import { encodePreviewFrame } from '../worker/protocol.js';
import {
  PROMPT,
  TestAgent,
  startControlPlane,
  until,
  type ControlPlane,
} from '../../test/support/worker-hub-kit.js';

const redisUrl = inject('redisUrl');
const planes: ControlPlane[] = [];
const agents: TestAgent[] = [];
const sockets: RecordingSocket[] = [];

afterEach(async () => {
  for (const s of sockets.splice(0)) s.close();
  for (const a of agents.splice(0)) await a.close();
  for (const p of planes.splice(0).reverse()) await p.close();
});

async function cluster(n: number, extra: Record<string, string> = {}): Promise<ControlPlane[]> {
  const prefix = `test:events:${process.pid}:${Math.random().toString(36).slice(2)}:`;
  const out: ControlPlane[] = [];
  for (let i = 0; i < n; i++) {
    const cp = await startControlPlane(
      { STORE: 'redis', REDIS_URL: redisUrl, REDIS_PREFIX: prefix, ...extra },
      {
        openStore: (config) =>
          openRedisStore({ url: redisUrl, defaults: defaultSettings(config), keyPrefix: prefix }),
      },
    );
    planes.push(cp);
    out.push(cp);
  }
  // Pub/sub subscriptions are asynchronous: wait until every process hears the first one (the
  // relay subscribed before this probe did, on the same connection).
  const heard = new Set<string>();
  for (const cp of out.slice(1))
    cp.services.cluster.subscribe('probe', () => heard.add(cp.services.cluster.processId));
  await until(
    async () => {
      await out[0]!.services.cluster.publish('probe', 1);
      return heard.size === n - 1;
    },
    5000,
    'cluster subscriptions',
  );
  return out;
}

const basic = (user: string) => `Basic ${Buffer.from(`${user}:pw-${user}-0123456789`).toString('base64')}`;

async function participant(cp: ControlPlane, user: string, clientId: string): Promise<RecordingSocket> {
  const url = `${cp.url.replace('http', 'ws')}/${user}/ws?clientId=${clientId}`;
  const s = await RecordingSocket.open(url, { authorization: basic(user) });
  sockets.push(s);
  await s.waitFor((r) => r.texts().some((m) => m.type === 'status'));
  return s;
}

/** The ComfyUI events of one job a socket got, in order. */
function eventsOf(s: RecordingSocket, jobId: string): { type: string; data: Record<string, unknown> }[] {
  return s.texts().filter((m) => m.type !== 'status' && m.data?.prompt_id === jobId);
}

/** What the worker relays for a job: ComfyUI's events, in the order ComfyUI sent them. */
function comfyEvents(jobId: string, from: number, to: number) {
  const all = [
    { type: 'execution_start', data: { prompt_id: jobId, timestamp: 1 } },
    { type: 'execution_cached', data: { nodes: [], prompt_id: jobId, timestamp: 2 } },
    { type: 'executing', data: { node: '1', display_node: '1', prompt_id: jobId } },
    ...[1, 2, 3, 4, 5, 6].map((i) => ({
      type: 'progress',
      data: { value: i, max: 6, prompt_id: jobId, node: '1' },
    })),
    { type: 'execution_success', data: { prompt_id: jobId, timestamp: 3 } },
    { type: 'executing', data: { node: null, prompt_id: jobId } },
  ];
  return all.slice(from, to);
}

async function users(cp: ControlPlane, ...names: string[]): Promise<void> {
  for (const n of names) await cp.services.accounts.create(n, 'participant', `pw-${n}-0123456789`);
}

async function enqueue(cp: ControlPlane, user: string, clientId: string): Promise<Job> {
  return cp.services.queue.enqueue({ user, prompt: PROMPT, metadata: { client_id: clientId } });
}

describe('job events across processes (Redis)', () => {
  it("a job queued on B runs on A's worker at once; the owner's socket on B gets its events in order, nobody else does", async () => {
    const [a, b] = await cluster(2);
    await users(a!, 'user001', 'user002');
    const { agent } = await TestAgent.register(a!.wsUrl, await a!.token('gpu-a'), { name: 'a1' });
    agents.push(agent);
    const alice = await participant(b!, 'user001', 'tab1');
    const bob = await participant(b!, 'user002', 'tab2');

    const job = await enqueue(b!, 'user001', 'tab1');
    // No polling anywhere: only the forwarded `enqueued` wakes A's dispatcher.
    const assign = await agent.next('assign');
    expect(assign.job.jobId).toBe(job.id);

    const sent = comfyEvents(job.id, 0, 11);
    for (const event of sent.slice(0, 5)) agent.send({ type: 'job_event', jobId: job.id, attempt: 1, event });
    const comfyFrame = encodeBinaryFrame({
      event: 1,
      name: 'PREVIEW_IMAGE',
      format: 1,
      mime: 'image/jpeg',
      image: Buffer.from('jpeg-bytes'),
    });
    agent.sendRaw(encodePreviewFrame(job.id, comfyFrame), true);
    for (const event of sent.slice(5)) agent.send({ type: 'job_event', jobId: job.id, attempt: 1, event });
    agent.send({ type: 'job_completed', jobId: job.id, attempt: 1, outputs: [] });

    await alice.waitFor((s) => eventsOf(s, job.id).length >= sent.length);
    await until(async () => (await b!.store.getJob(job.id))?.status === 'completed', 5000, 'completed');
    await a!.services.events!.flushed();
    await new Promise((r) => setTimeout(r, 200));
    expect(eventsOf(alice, job.id)).toEqual(sent);
    expect(alice.binaries().length).toBe(1);
    expect(alice.binaries()[0]!.includes(Buffer.from('jpeg-bytes'))).toBe(true);
    expect(eventsOf(bob, job.id)).toEqual([]);
    expect(bob.binaries()).toEqual([]);
    expect(bob.texts().every((m) => m.type === 'status')).toBe(true);
  }, 60_000);

  it("a cancel on B reaches the worker on A; the owner on B sees ComfyUI's own interruption", async () => {
    const [a, b] = await cluster(2);
    await users(a!, 'user001');
    const { agent } = await TestAgent.register(a!.wsUrl, await a!.token('gpu-a'), { name: 'a1' });
    agents.push(agent);
    const alice = await participant(b!, 'user001', 'tab1');
    const job = await enqueue(b!, 'user001', 'tab1');
    await agent.next('assign');
    for (const event of comfyEvents(job.id, 0, 4))
      agent.send({ type: 'job_event', jobId: job.id, attempt: 1, event });
    await alice.waitFor((s) => eventsOf(s, job.id).length >= 4);

    await b!.services.queue.cancel(job.id);
    const cancel = await agent.next('cancel');
    expect(cancel).toMatchObject({ jobId: job.id, attempt: 1 });
    const interrupted = {
      type: 'execution_interrupted',
      data: { prompt_id: job.id, node_id: '1', node_type: 'EmptyImage', executed: [], timestamp: 9 },
    };
    agent.send({ type: 'job_event', jobId: job.id, attempt: 1, event: interrupted });
    agent.send({
      type: 'job_event',
      jobId: job.id,
      attempt: 1,
      event: { type: 'executing', data: { node: null, prompt_id: job.id } },
    });
    agent.send({ type: 'job_cancelled', jobId: job.id, attempt: 1 });
    await alice.waitFor((s) => eventsOf(s, job.id).some((m) => m.type === 'execution_interrupted'));
    await a!.services.events!.flushed();
    await new Promise((r) => setTimeout(r, 200));
    const endings = eventsOf(alice, job.id).filter((m) => m.type === 'execution_interrupted');
    // The worker's own, once (not one made up on B before it came).
    expect(endings).toEqual([interrupted]);
  }, 60_000);

  it('pause and resume on B hold and wake the dispatcher on A; each job is counted once, where it was queued', async () => {
    const [a, b] = await cluster(2);
    const { agent } = await TestAgent.register(a!.wsUrl, await a!.token('gpu-a'), { name: 'a1' });
    agents.push(agent);
    await b!.services.queue.updateSettings({ paused: true });
    const job = await enqueue(b!, 'user001', 'tab1');
    expect(await agent.none('assign', 500)).toBe(true);
    await b!.services.queue.updateSettings({ paused: false });
    expect((await agent.next('assign')).job.jobId).toBe(job.id);

    const submitted = async (cp: ControlPlane) => {
      const res = await cp.app.inject({
        url: '/metrics',
        headers: { authorization: 'Bearer test-api-token-0123456789' },
      });
      expect(res.statusCode).toBe(200);
      return Number(/^comfy_multi_jobs_submitted_total (\S+)$/m.exec(res.body)?.[1]);
    };
    expect(await submitted(b!)).toBe(1);
    expect(await submitted(a!)).toBe(0);
  }, 60_000);

  it('events published while the link between processes was down reach the owner once, read back from the log', async () => {
    const [a, b] = await cluster(2);
    await users(a!, 'user001');
    const { agent } = await TestAgent.register(a!.wsUrl, await a!.token('gpu-a'), { name: 'a1' });
    agents.push(agent);
    const alice = await participant(b!, 'user001', 'tab1');
    const job = await enqueue(b!, 'user001', 'tab1');
    await agent.next('assign');
    const send = (from: number, to: number) => {
      for (const event of comfyEvents(job.id, from, to))
        agent.send({ type: 'job_event', jobId: job.id, attempt: 1, event });
    };
    send(0, 4);
    await alice.waitFor((s) => eventsOf(s, job.id).length >= 4);
    // Every process's subscriber connection drops; what A publishes until they are back is lost.
    const admin = new Redis(redisUrl);
    try {
      await admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub');
    } finally {
      admin.disconnect();
    }
    send(4, 8);
    await a!.services.events!.flushed();
    await alice.waitFor((s) => eventsOf(s, job.id).length >= 8, 10_000);
    send(8, 11);
    agent.send({ type: 'job_completed', jobId: job.id, attempt: 1, outputs: [] });
    await alice.waitFor((s) => eventsOf(s, job.id).length >= 11, 10_000);
    await a!.services.events!.flushed();
    await new Promise((r) => setTimeout(r, 300));
    const key = (m: unknown) => JSON.stringify(m);
    const got = eventsOf(alice, job.id);
    expect(got.map(key).sort()).toEqual(comfyEvents(job.id, 0, 11).map(key).sort());
  }, 60_000);

  it('a job requeued on B (its worker there was lost) goes at once to the idle worker on A', async () => {
    const [a, b] = await cluster(2, { LEASE_MS: '1500', HEARTBEAT_MS: '400' });
    const { agent: lost } = await TestAgent.register(b!.wsUrl, await b!.token('gpu-b'), { name: 'b1' });
    agents.push(lost);
    const job = await enqueue(b!, 'user001', 'tab1');
    expect((await lost.next('assign')).job.jobId).toBe(job.id);
    const { agent: idle } = await TestAgent.register(a!.wsUrl, await a!.token('gpu-a'), { name: 'a1' });
    agents.push(idle);
    idle.heartbeatEvery(400);
    // B's lease sweeper (run here by hand: these control planes start none) requeues the lost
    // worker's job; A's dispatcher can hear of it only from B.
    await lost.terminate();
    await until(
      async () => ((await b!.store.getJob(job.id))?.leaseExpiresAt ?? 0) < Date.now(),
      10_000,
      'lapse',
    );
    await b!.services.queue.sweep();
    const assign = await idle.next('assign', () => true, 15_000);
    expect(assign.job).toMatchObject({ jobId: job.id, attempt: 2 });
  }, 60_000);

  it('a socket that drops and comes back with the same clientId on another process gets what it missed, once', async () => {
    const [a, b, c] = await cluster(3);
    await users(a!, 'user001');
    const { agent } = await TestAgent.register(a!.wsUrl, await a!.token('gpu-a'), { name: 'a1' });
    agents.push(agent);
    const first = await participant(b!, 'user001', 'tab1');
    const job = await enqueue(b!, 'user001', 'tab1');
    await agent.next('assign');
    const send = (from: number, to: number) => {
      for (const event of comfyEvents(job.id, from, to))
        agent.send({ type: 'job_event', jobId: job.id, attempt: 1, event });
    };
    send(0, 4);
    await first.waitFor((s) => eventsOf(s, job.id).length >= 4);
    const log = b!.services.events!.log!;
    // B saved the socket's cursor when it closed: it was handed the first four events.
    const handed = (await log.after('user001', '0-0', 100)).map((e) => e.id)[3]!;
    first.close();
    await until(
      async () => (await log.loadCursor('user001', 'tab1'))?.w[a!.services.cluster.processId] === handed,
      5000,
      'cursor saved',
    );

    send(4, 8); // while no tab is open
    await a!.services.events!.flushed();
    const second = await participant(c!, 'user001', 'tab1');
    await second.waitFor((s) => eventsOf(s, job.id).length >= 4);
    send(8, 11);
    agent.send({ type: 'job_completed', jobId: job.id, attempt: 1, outputs: [] });
    await second.waitFor((s) => eventsOf(s, job.id).some((m) => m.type === 'execution_success'));
    await second.waitFor((s) => eventsOf(s, job.id).length >= 7);
    await a!.services.events!.flushed();
    await new Promise((r) => setTimeout(r, 200));

    expect(eventsOf(first, job.id)).toEqual(comfyEvents(job.id, 0, 4));
    // Missed ones replayed, then live ones; none twice. (After the replay the hub also repeats the
    // running job's current `executing` and `progress`, as for any reconnecting tab.)
    const got = eventsOf(second, job.id);
    expect(got.slice(0, 4)).toEqual(comfyEvents(job.id, 4, 8));
    expect(got.slice(-3)).toEqual(comfyEvents(job.id, 8, 11));
    const courtesy = got.slice(4, -3);
    expect(courtesy.length).toBeLessThanOrEqual(3);
    for (const m of courtesy) expect(comfyEvents(job.id, 0, 8)).toContainEqual(m);
  }, 60_000);

  /**
   * Three processes; a worker that numbers its events on A, the owner's socket on C, one job
   * assigned. `numbered` sends events `from`..`to` of it; `moveToB` stops A (as a kill would, for
   * what the test arranged) and connects the worker to B, still running the job.
   */
  async function numberedJobOnA() {
    const [a, b, c] = await cluster(3);
    await users(a!, 'user001');
    const token = await a!.token('gpu-a');
    const hello = { name: 'a1', eventSeq: true, acks: true };
    const { agent: first } = await TestAgent.register(a!.wsUrl, token, hello);
    agents.push(first);
    const alice = await participant(c!, 'user001', 'tab1');
    const job = await enqueue(c!, 'user001', 'tab1');
    await first.next('assign');
    const all = comfyEvents(job.id, 0, 11);
    const numbered = (agent: TestAgent, from: number, to: number) => {
      for (let seq = from; seq < to; seq++)
        agent.send({ type: 'job_event', jobId: job.id, attempt: 1, event: all[seq]!, seq });
    };
    const moveToB = async () => {
      await first.terminate();
      await a!.close();
      planes.splice(planes.indexOf(a!), 1);
    };
    const reconnectToB = async () => {
      const inFlight = [{ jobId: job.id, attempt: 1, state: 'running' as const }];
      const { agent: second } = await TestAgent.register(b!.wsUrl, token, { ...hello, inFlight });
      agents.push(second);
      return second;
    };
    return { a: a!, b: b!, first, alice, job, all, numbered, moveToB, reconnectToB };
  }

  it("a process that logged a worker's events and died before publishing them: the worker sends them again to another process, and the owner gets each once, in order", async () => {
    const { a, b, first, alice, job, all, numbered, moveToB, reconnectToB } = await numberedJobOnA();
    numbered(first, 0, 4);
    await alice.waitFor((s) => eventsOf(s, job.id).length >= 4);
    await a.services.events!.flushed();
    // A logs the next two and dies before publishing them (written as A's relay writes them).
    const log = a.services.events!.log!;
    const aId = a.services.cluster.processId;
    for (const seq of [4, 5])
      await log.append('user001', {
        from: aId,
        jobId: job.id,
        workerId: first.workerId,
        event: all[seq]!,
        key: `${job.id}#1##${seq}`,
      });
    await moveToB();

    // The agent reconnects to B and sends every event of the job again, then the rest and its finish.
    const second = await reconnectToB();
    numbered(second, 0, 11);
    second.send({ type: 'job_completed', jobId: job.id, attempt: 1, outputs: [] });
    await second.next('ack');
    await alice.waitFor((s) => eventsOf(s, job.id).length >= 11, 10_000);
    await b.services.events!.flushed();
    await new Promise((r) => setTimeout(r, 300));

    expect(eventsOf(alice, job.id)).toEqual(all);
    // Logged once each: A's six, B's five.
    const logged = (await b.services.events!.log!.after('user001', '0-0', 100)).filter(
      (e) => e.jobId === job.id,
    );
    expect(logged.map((e) => e.event)).toEqual(all);
    expect(logged.filter((e) => e.from === aId).length).toBe(6);
  }, 60_000);

  it('a finish recorded by a process that died before its owner heard the ending: the events sent again tell the owner, once', async () => {
    const { b, first, alice, job, all, numbered, moveToB, reconnectToB } = await numberedJobOnA();
    numbered(first, 0, 9);
    await alice.waitFor((s) => eventsOf(s, job.id).length >= 9);
    // The ending reached A, which recorded the finish and died before logging or publishing the
    // ending (held back until the finish is recorded) and before acknowledging. (Recorded here
    // through B's queue after A is gone: A's own record would tell its listeners the worker let go.)
    await moveToB();
    await b.services.queue.complete(job.id, 1, []);

    const second = await reconnectToB();
    numbered(second, 0, 11);
    second.send({ type: 'job_completed', jobId: job.id, attempt: 1, outputs: [] });
    await second.next('ack');
    await alice.waitFor((s) => eventsOf(s, job.id).length >= 11, 10_000);
    await new Promise((r) => setTimeout(r, 300));
    expect(eventsOf(alice, job.id)).toEqual(all);
  }, 60_000);
});
