/**
 * The agent against the real ComfyUI stand-in (in process) and a small real control plane
 * (test/support/fake-control-plane.ts) speaking the worker protocol.
 */
import { randomUUID } from 'node:crypto';
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startFakeControlPlane, type FakeControlPlane } from '../../../test/support/fake-control-plane.js';
import { modelFreePrompt } from '../../../test/support/prompts.js';
import { startStandin, type Standin } from '../../../test/support/comfyui-standin/server.js';
import { encodeRgbPng, solidImage } from '../../../test/support/comfyui-standin/image.js';
import { createAgent, type AgentHandle, type WorkerAgent } from './index.js';
import { CLOSE_SERVICE_RESTART, CLOSE_TOKEN_REVOKED, type AgentMessage } from '../protocol.js';

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
const logger = pino({ level: process.env.AGENT_TEST_LOG ?? 'silent' });

async function waitFor<T>(
  fn: () => T | undefined | null | false,
  timeoutMs = 10_000,
  what = 'condition',
): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

let standin: Standin;
let cp: FakeControlPlane;
let agent: AgentHandle | undefined;
/** The running agent itself, for the one test that reaches into its ComfyUI socket. */
let agentInstance: WorkerAgent | undefined;

function start(
  opts: {
    prefetch?: number;
    token?: string;
    comfyuiUrl?: string;
    mirrorFrontend?: boolean;
    onRevoked?: () => void;
    backoff?: { baseMs: number; maxMs: number };
  } = {},
): AgentHandle {
  agentInstance = createAgent({
    serverUrl: cp.url,
    token: opts.token ?? cp.token,
    comfyuiUrl: opts.comfyuiUrl ?? standin.url,
    ...(opts.mirrorFrontend !== undefined ? { mirrorFrontend: opts.mirrorFrontend } : {}),
    name: 'gpu-test',
    prefetch: opts.prefetch ?? 1,
    logger,
    probeIntervalMs: 200,
    probeTimeoutMs: 2000,
    failuresToUnhealthy: 1,
    backoff: opts.backoff ?? { baseMs: 50, maxMs: 300 },
    ...(opts.onRevoked ? { onRevoked: opts.onRevoked } : {}),
  });
  agentInstance.start();
  agent = agentInstance;
  return agent;
}

function assign(
  jobId: string,
  prompt: Record<string, unknown>,
  opts: { attempt?: number; user?: string } = {},
): void {
  cp.send({
    type: 'assign',
    job: {
      jobId,
      attempt: opts.attempt ?? 1,
      user: opts.user ?? 'alice',
      prompt,
      extraData: {},
      front: false,
    },
  });
}

beforeAll(async () => {
  standin = await startStandin({ delayMs: 1000 });
});

afterAll(async () => {
  await standin.close();
});

afterEach(async () => {
  await agent?.stop();
  agent = undefined;
  await cp?.close();
  await standin.faults.reset();
  await standin.waitForIdle(10_000).catch(() => undefined);
});

describe('registration', () => {
  it('says hello with ComfyUI facts and uploads the environment only when asked', async () => {
    cp = await startFakeControlPlane({ welcome: { needEnv: true } });
    start();
    const hello = await cp.waitFor('hello', (h) => h.healthy);
    expect(hello.comfyuiVersion).toBe('0.3.64');
    expect(hello.devices[0]?.vramTotal).toBeGreaterThan(0);
    expect(hello.envHash).toMatch(/^[0-9a-f]{64}$/);
    expect(hello.healthy).toBe(true);
    expect(hello.prefetch).toBe(1);
    const env = await cp.waitFor('env');
    expect(env.hash).toBe(hello.envHash);
    expect(Object.keys(env.snapshot.objectInfo)).toContain('SaveImage');
    expect(env.snapshot.models.checkpoints).toEqual([]);
    // Volatile figures stay out of the snapshot (and so out of its hash).
    expect(JSON.stringify(env.snapshot.systemStats)).not.toMatch(/ram_free|vram_free/);
    await cp.waitFor('heartbeat');

    // Same ComfyUI again: same hash; the server already has it.
    await agent!.stop();
    await cp.close();
    cp = await startFakeControlPlane({ welcome: { needEnv: false } });
    start();
    const again = await cp.waitFor('hello', (h) => h.healthy);
    expect(again.envHash).toBe(hello.envHash);
    await cp.waitFor('heartbeat');
    expect(cp.ofType('env')).toHaveLength(0);
  });

  it('is refused with a wrong token and asks again only after a minute instead of hammering', async () => {
    cp = await startFakeControlPlane();
    start({ token: 'definitely-wrong' });
    await waitFor(() => cp.rejected.filter((s) => s === 401).length >= 1, 10_000, 'a 401');
    // The normal backoff would have retried several times within a second.
    await new Promise((r) => setTimeout(r, 1500));
    expect(cp.rejected.filter((s) => s === 401)).toHaveLength(1);
    expect(cp.connections()).toBe(0);
    expect(agent!.status().control.lastError).toMatch(/401/);
  });
});

describe('running jobs', () => {
  it('runs a prompt: namespaced prefix, relayed events, streamed PNG upload, completion', async () => {
    cp = await startFakeControlPlane();
    start();
    await cp.waitFor('hello', (h) => h.healthy);
    const jobId = `job-${randomUUID()}`;
    assign(jobId, modelFreePrompt({ color: 0x112233 }));
    const done = await cp.waitFor('job_completed', (m) => m.jobId === jobId);

    const started = await cp.waitFor('job_started', (m) => m.jobId === jobId);
    expect(started.attempt).toBe(1);
    const types = cp
      .ofType('job_event')
      .filter((e) => e.jobId === jobId)
      .map((e) => e.event.type);
    for (const t of [
      'execution_start',
      'execution_cached',
      'executing',
      'progress_state',
      'executed',
      'execution_success',
    ]) {
      expect(types).toContain(t);
    }
    // The prefix is namespaced by user and job; the agent's own client id was used.
    const entry = Object.values(standin.state.history).find(
      (h) => h.prompt[2]['3']?.inputs.filename_prefix === `alice/${jobId}/ci`,
    );
    expect(entry).toBeDefined();
    expect(entry!.prompt[3].client_id).toMatch(/^comfy-multi-/);

    expect(done.outputs).toHaveLength(1);
    const out = done.outputs[0]!;
    expect(out).toMatchObject({
      nodeId: '3',
      type: 'output',
      kind: 'images',
      subfolder: jobId,
      filename: 'ci_00001_.png',
    });
    const upload = cp.uploads.find((u) => u.jobId === jobId)!;
    expect(upload.path).toBe(`${jobId}/ci_00001_.png`);
    expect(upload.body.subarray(0, 8).equals(PNG_SIGNATURE)).toBe(true);
    expect(out.size).toBe(upload.body.length);
    expect(out.sha256).toBe(upload.sha256);
  });

  it.each([
    [false, "relays an output's `executed` only once it is stored"],
    [
      true,
      'relays `executed` and the success while the output uploads when the server serves files on their way',
    ],
  ])('earlyOutputs %s: %s; reports completion once stored', async (early) => {
    cp = await startFakeControlPlane({ welcome: early ? { earlyOutputs: true } : {} });
    let release!: () => void;
    cp.holdUploads = new Promise<void>((r) => (release = r));
    start();
    await cp.waitFor('hello', (h) => h.healthy);
    const jobId = `job-${randomUUID()}`;
    assign(jobId, modelFreePrompt({ color: 0x445566 }));
    const relayed = (type: string) =>
      cp.ofType('job_event').some((e) => e.jobId === jobId && e.event.type === type);
    // ComfyUI is done with the prompt (its history is written), the upload is held.
    await waitFor(
      () =>
        Object.values(standin.state.history).some(
          (h) => h.prompt[2]['3']?.inputs.filename_prefix === `alice/${jobId}/ci`,
        ),
      15_000,
      "ComfyUI's history of the job",
    );
    await new Promise((r) => setTimeout(r, 300));
    expect(relayed('executed')).toBe(early);
    expect(relayed('execution_success')).toBe(early);
    expect(cp.ofType('job_completed').some((m) => m.jobId === jobId)).toBe(false);
    release();
    const done = await cp.waitFor('job_completed', (m) => m.jobId === jobId);
    expect(done.outputs).toHaveLength(1);
    const types = cp
      .ofType('job_event')
      .filter((e) => e.jobId === jobId)
      .map((e) => e.event.type);
    // ComfyUI's order either way, its final `executing` last.
    expect(types.indexOf('executed')).toBeGreaterThan(types.indexOf('execution_start'));
    expect(types.indexOf('execution_success')).toBeGreaterThan(types.indexOf('executed'));
    expect(types.at(-1)).toBe('executing');
  });

  it('reports an execution_error with node, type, message and traceback', async () => {
    cp = await startFakeControlPlane();
    start();
    await cp.waitFor('hello', (h) => h.healthy);
    standin.faults.executionError({
      nodeId: '2',
      exceptionType: 'RuntimeError',
      message: 'CUDA out of memory',
    });
    const jobId = `job-${randomUUID()}`;
    assign(jobId, modelFreePrompt({ color: 0x010203 }));
    const failed = await cp.waitFor('job_failed', (m) => m.jobId === jobId);
    expect(failed.error).toMatchObject({
      reason: 'execution_error',
      nodeId: '2',
      nodeType: 'ImageInvert',
      exceptionType: 'RuntimeError',
    });
    expect(failed.error.message).toContain('CUDA out of memory');
    expect(failed.error.traceback?.length).toBeGreaterThan(0);
    expect(cp.ofType('job_completed')).toHaveLength(0);
  });

  it('reports a prompt ComfyUI rejects as invalid_prompt with its node errors', async () => {
    cp = await startFakeControlPlane();
    start();
    await cp.waitFor('hello', (h) => h.healthy);
    const jobId = `job-${randomUUID()}`;
    assign(jobId, { '1': { class_type: 'NoSuchNode', inputs: {} } });
    const failed = await cp.waitFor('job_failed', (m) => m.jobId === jobId);
    expect(failed.error.reason).toBe('invalid_prompt');
    expect(failed.error.details).toHaveProperty('node_errors');
  });

  it('relays preview frames tagged with the job id', async () => {
    cp = await startFakeControlPlane();
    start();
    await cp.waitFor('hello', (h) => h.healthy);
    const jobId = `job-${randomUUID()}`;
    assign(jobId, modelFreePrompt({ sleep: { seconds: 0.2, steps: 3, seed: 7 }, color: 0x445566 }));
    await cp.waitFor('job_completed', (m) => m.jobId === jobId);
    const previews = cp.previews.filter((p) => p.jobId === jobId);
    expect(previews.length).toBeGreaterThan(0);
    expect(previews[0]!.comfyFrame.readUInt32BE(0)).toBeGreaterThan(0);
  });

  it('uploads referenced inputs into the user subfolder and rewrites the prompt', async () => {
    cp = await startFakeControlPlane();
    start();
    await cp.waitFor('hello', (h) => h.healthy);
    const jobId = `job-${randomUUID()}`;
    const png = encodeRgbPng(solidImage(16, 16, 1, 0x884422).frames[0]!, 16, 16);
    cp.inputs.set(`${jobId}/photos/cat.png`, png);
    assign(jobId, modelFreePrompt({ loadImage: 'photos/cat.png' }), { user: 'bob' });
    const done = await cp.waitFor('job_completed', (m) => m.jobId === jobId);
    expect(done.outputs[0]?.filename).toMatch(/\.png$/);
    expect(readdirSync(join(standin.dirs.input, 'bob', 'photos'))).toContain('cat.png');
    const entry = Object.values(standin.state.history).find(
      (h) => h.prompt[2]['1']?.inputs.image === 'bob/photos/cat.png',
    );
    expect(entry).toBeDefined();
  });

  it("never lets a prompt reach another user's files in ComfyUI's folders", async () => {
    cp = await startFakeControlPlane();
    start();
    await cp.waitFor('hello', (h) => h.healthy);
    // alice's input from an earlier job is still in this ComfyUI's input folder.
    mkdirSync(join(standin.dirs.input, 'alice'), { recursive: true });
    writeFileSync(
      join(standin.dirs.input, 'alice', 'secret.png'),
      encodeRgbPng(solidImage(8, 8, 1, 0xff0000).frames[0]!, 8, 8),
    );
    const jobId = `job-${randomUUID()}`;
    assign(jobId, modelFreePrompt({ loadImage: 'alice/secret.png' }), { user: 'bob' });
    const failed = await cp.waitFor('job_failed', (m) => m.jobId === jobId);
    expect(failed.error.reason).toBe('invalid_prompt');
    expect(JSON.stringify(failed.error.details)).toContain('bob/alice/secret.png');
  });

  it("keeps the next job in ComfyUI's own queue while one runs (prefetch)", async () => {
    cp = await startFakeControlPlane({ welcome: { heartbeatMs: 100 } });
    start({ prefetch: 1 });
    await cp.waitFor('hello', (h) => h.healthy);
    const a = `job-a-${randomUUID()}`;
    const b = `job-b-${randomUUID()}`;
    assign(a, modelFreePrompt({ sleep: { seconds: 1, seed: 1 } }));
    assign(b, modelFreePrompt({ sleep: { seconds: 0.1, seed: 2 } }));
    await waitFor(
      () => standin.state.running.length === 1 && standin.state.pending.length === 1,
      5000,
      'one running, one pending',
    );
    const hb = await cp.waitFor('heartbeat', (m) => m.inFlight.length === 2);
    expect(hb.inFlight.map((f) => f.state).sort()).toEqual(['queued', 'running']);
    await cp.waitFor('job_completed', (m) => m.jobId === a);
    await cp.waitFor('job_completed', (m) => m.jobId === b);
  });
});

describe('cancel and release', () => {
  it('cancels the running job by interrupting exactly that prompt', async () => {
    cp = await startFakeControlPlane();
    start();
    await cp.waitFor('hello', (h) => h.healthy);
    const a = `job-a-${randomUUID()}`;
    const b = `job-b-${randomUUID()}`;
    assign(a, modelFreePrompt({ sleep: { seconds: 5, steps: 50, seed: 3 } }));
    assign(b, modelFreePrompt({ sleep: { seconds: 0.1, seed: 4 } }));
    await cp.waitFor('job_started', (m) => m.jobId === a);
    cp.send({ type: 'cancel', jobId: a, attempt: 1 });
    await cp.waitFor('job_cancelled', (m) => m.jobId === a);
    // The other job is untouched and runs next.
    await cp.waitFor('job_completed', (m) => m.jobId === b, 10_000);
    expect(cp.ofType('job_completed').some((m) => m.jobId === a)).toBe(false);
    expect(cp.ofType('job_failed')).toHaveLength(0);
    const interrupted = Object.values(standin.state.history).filter((h) =>
      h.status.messages.some(([t]) => t === 'execution_interrupted'),
    );
    expect(interrupted).toHaveLength(1);
  });

  it("cancels a queued job by deleting it from ComfyUI's queue", async () => {
    cp = await startFakeControlPlane();
    start();
    await cp.waitFor('hello', (h) => h.healthy);
    const a = `job-a-${randomUUID()}`;
    const b = `job-b-${randomUUID()}`;
    assign(a, modelFreePrompt({ sleep: { seconds: 0.8, seed: 5 } }));
    assign(b, modelFreePrompt({ sleep: { seconds: 0.1, seed: 6 } }));
    await waitFor(() => standin.state.pending.length === 1, 5000, 'b pending in ComfyUI');
    cp.send({ type: 'cancel', jobId: b, attempt: 1 });
    await cp.waitFor('job_cancelled', (m) => m.jobId === b);
    expect(standin.state.pending).toHaveLength(0);
    await cp.waitFor('job_completed', (m) => m.jobId === a);
    await standin.waitForIdle();
    const ranB = Object.values(standin.state.history).some((h) =>
      String(h.prompt[2]['3']?.inputs.filename_prefix).includes(b),
    );
    expect(ranB).toBe(false);
    expect(cp.ofType('job_started').some((m) => m.jobId === b)).toBe(false);
  });

  it('releases a prefetched job on request, but not a running one', async () => {
    cp = await startFakeControlPlane();
    start();
    await cp.waitFor('hello', (h) => h.healthy);
    const a = `job-a-${randomUUID()}`;
    const b = `job-b-${randomUUID()}`;
    assign(a, modelFreePrompt({ sleep: { seconds: 0.8, seed: 8 } }));
    assign(b, modelFreePrompt({ sleep: { seconds: 0.1, seed: 9 } }));
    await cp.waitFor('job_started', (m) => m.jobId === a);
    await waitFor(() => standin.state.pending.length === 1, 5000, 'b pending');
    cp.send({ type: 'release', jobId: a, attempt: 1 });
    cp.send({ type: 'release', jobId: b, attempt: 1 });
    const released = await cp.waitFor('job_released', (m) => m.jobId === b);
    expect(released.reason).toMatch(/release/);
    expect(standin.state.pending).toHaveLength(0);
    await cp.waitFor('job_completed', (m) => m.jobId === a);
    expect(cp.ofType('job_released').some((m) => m.jobId === a)).toBe(false);
  });
});

describe('failures', () => {
  it('reconnects after losing the control plane and reports the job it still runs', async () => {
    cp = await startFakeControlPlane();
    start();
    await cp.waitFor('hello', (h) => h.healthy);
    const jobId = `job-${randomUUID()}`;
    assign(jobId, modelFreePrompt({ sleep: { seconds: 1, seed: 10 } }));
    await cp.waitFor('job_started', (m) => m.jobId === jobId);
    cp.dropConnection();
    // The second connection opens before its hello arrives: wait for the hello itself.
    const helloOn2 = () => cp.messages.find((m) => m.conn === 2 && m.msg.type === 'hello');
    await waitFor(() => helloOn2() !== undefined, 5000, 'a hello on a second connection');
    const hello2 = helloOn2()!.msg;
    expect(hello2.type === 'hello' && hello2.inFlight).toEqual([{ jobId, attempt: 1, state: 'running' }]);
    const done = await cp.waitFor('job_completed', (m) => m.jobId === jobId);
    expect(done.outputs).toHaveLength(1);
    expect(cp.ofType('job_completed').filter((m) => m.jobId === jobId)).toHaveLength(1);
  });

  it('keeps a report until it is acknowledged: sent again first thing after a reconnect, never after the ack', async () => {
    cp = await startFakeControlPlane({ welcome: { acks: true } });
    start();
    await cp.waitFor('hello', (h) => h.healthy && h.acks === true);
    const jobId = `job-${randomUUID()}`;
    assign(jobId, modelFreePrompt({ color: 0x212121 }));
    await cp.waitFor('job_completed', (m) => m.jobId === jobId);
    // The control plane died before recording it (no ack): the report must come again.
    cp.dropConnection();
    const on = (conn: number) => cp.messages.filter((m) => m.conn === conn).map((m) => m.msg);
    await waitFor(() => on(2).some((m) => m.type === 'job_completed'), 10_000, 'the report again');
    const second = on(2);
    expect(second[0]?.type).toBe('hello');
    const hello = second[0]!;
    // Announced as still ours, so the server re-adopts it instead of running it again.
    expect(hello.type === 'hello' && hello.inFlight).toEqual([{ jobId, attempt: 1, state: 'running' }]);
    expect(second[1]).toMatchObject({ type: 'job_completed', jobId, attempt: 1 });
    cp.send({ type: 'ack', report: 'job_completed', jobId, attempt: 1 });
    await waitFor(() => agent!.status().control.outbox === 0, 5000, 'outbox empty');
    cp.dropConnection();
    await waitFor(() => on(3).some((m) => m.type === 'heartbeat'), 10_000, 'a third connection');
    expect(on(3).filter((m) => m.type === 'job_completed')).toEqual([]);
    const hello3 = on(3)[0]!;
    expect(hello3.type === 'hello' && hello3.inFlight).toEqual([]);
  });

  it("numbers a job's events and, after a reconnect, sends them all again before the report; an ack forgets them", async () => {
    cp = await startFakeControlPlane({ welcome: { acks: true, eventSeq: true } });
    start();
    await cp.waitFor('hello', (h) => h.healthy && h.eventSeq === true);
    const jobId = `job-${randomUUID()}`;
    assign(jobId, modelFreePrompt({ color: 0x343434 }));
    await cp.waitFor('job_completed', (m) => m.jobId === jobId);
    const on = (conn: number) => cp.messages.filter((m) => m.conn === conn).map((m) => m.msg);
    const events = (conn: number) =>
      on(conn).filter((m): m is Extract<AgentMessage, { type: 'job_event' }> => m.type === 'job_event');
    const first = events(1);
    expect(first.length).toBeGreaterThan(3);
    expect(first.map((m) => m.seq)).toEqual(first.map((_, i) => i));
    expect(first.at(-1)?.event).toMatchObject({ type: 'executing', data: { node: null } });

    // Numbered within this run (the agent's ComfyUI prompt id for it).
    expect(new Set(first.map((m) => m.run)).size).toBe(1);
    expect(first[0]!.run).toMatch(/^[0-9a-f-]{36}$/);

    // The process that got them died before it logged them all: they come again, same numbers,
    // same order, and only then the report. Progress is sent again as its latest only (each
    // `progress` / `progress_state` says all an earlier one did).
    cp.dropConnection();
    await waitFor(() => on(2).some((m) => m.type === 'job_completed'), 10_000, 'the report again');
    const second = on(2).filter((m) => m.type === 'job_event' || m.type === 'job_completed');
    const superseded = (m: (typeof first)[number], i: number) =>
      ['progress', 'progress_state'].includes(m.event.type) &&
      first.slice(i + 1).some((later) => later.event.type === m.event.type);
    expect(second.slice(0, -1)).toEqual(first.filter((m, i) => !superseded(m, i)));
    expect(second.length - 1).toBeLessThan(first.length);
    expect(second.at(-1)).toMatchObject({ type: 'job_completed', jobId });

    cp.send({ type: 'ack', report: 'job_completed', jobId, attempt: 1 });
    await waitFor(() => agent!.status().control.outbox === 0, 5000, 'outbox empty');
    cp.dropConnection();
    await waitFor(() => on(3).some((m) => m.type === 'heartbeat'), 10_000, 'a third connection');
    expect(events(3)).toEqual([]);
  });

  it('sends each event once, unnumbered, to a control plane that does not take numbered events', async () => {
    cp = await startFakeControlPlane({ welcome: { acks: true } });
    start();
    await cp.waitFor('hello', (h) => h.healthy);
    const jobId = `job-${randomUUID()}`;
    assign(jobId, modelFreePrompt({ color: 0x454545 }));
    await cp.waitFor('job_completed', (m) => m.jobId === jobId);
    const evs = cp.ofType('job_event').filter((m) => m.jobId === jobId);
    expect(evs.length).toBeGreaterThan(3);
    expect(evs.every((m) => m.seq === undefined)).toBe(true);
    cp.dropConnection();
    await waitFor(() => cp.ofType('job_completed').length === 2, 10_000, 'the report again');
    expect(cp.ofType('job_event').filter((m) => m.jobId === jobId)).toHaveLength(evs.length);
  });

  it('stops when its token is revoked (4004): drops its jobs in ComfyUI, reports nothing, does not reconnect', async () => {
    cp = await startFakeControlPlane({ welcome: { acks: true } });
    let revoked = 0;
    start({ onRevoked: () => revoked++ });
    await cp.waitFor('hello', (h) => h.healthy);
    const jobId = `job-${randomUUID()}`;
    assign(jobId, modelFreePrompt({ sleep: { seconds: 5, steps: 50, seed: 31 } }));
    await cp.waitFor('job_started', (m) => m.jobId === jobId);
    cp.closeWith(CLOSE_TOKEN_REVOKED, 'worker token revoked');
    await waitFor(() => revoked === 1, 5000, 'onRevoked');
    await standin.waitForIdle(5000);
    expect(agent!.status().jobs).toEqual([]);
    expect(agent!.status().control).toMatchObject({ outbox: 0, lastError: 'the worker token was revoked' });
    // No reconnect and no report: the control plane already gave the job back.
    await new Promise((r) => setTimeout(r, 500));
    expect(cp.connections()).toBe(1);
    expect(cp.ofType('job_failed')).toEqual([]);
    expect(cp.ofType('job_completed')).toEqual([]);
  });

  it('a draining control plane (1012): reconnects at once, not after its back-off, and keeps its running job', async () => {
    cp = await startFakeControlPlane({ welcome: { acks: true } });
    // A lost connection would wait 15–30 s before the next try.
    start({ backoff: { baseMs: 30_000, maxMs: 30_000 } });
    await cp.waitFor('hello', (h) => h.healthy);
    const jobId = `job-${randomUUID()}`;
    assign(jobId, modelFreePrompt({ sleep: { seconds: 3, steps: 30, seed: 41 } }));
    await cp.waitFor('job_started', (m) => m.jobId === jobId);
    cp.closeWith(CLOSE_SERVICE_RESTART, 'server restarting');
    // The connection counts when it opens; its hello may still be on its way.
    const hello = await waitFor(
      () => cp.messages.find((m) => m.conn === 2 && m.msg.type === 'hello')?.msg,
      5000,
      'the hello of a second connection within the jitter',
    );
    expect(hello?.type === 'hello' && hello.inFlight).toEqual([{ jobId, attempt: 1, state: 'running' }]);
    const done = await cp.waitFor('job_completed', (m) => m.jobId === jobId, 15_000);
    expect(done.attempt).toBe(1);
    expect(cp.ofType('job_failed')).toEqual([]);
  });

  it('drops a job the control plane forgot while it was away, and stops it in ComfyUI', async () => {
    cp = await startFakeControlPlane();
    start();
    await cp.waitFor('hello', (h) => h.healthy);
    const jobId = `job-${randomUUID()}`;
    assign(jobId, modelFreePrompt({ sleep: { seconds: 5, steps: 50, seed: 11 } }));
    await cp.waitFor('job_started', (m) => m.jobId === jobId);
    cp.welcome.forget = (inFlight) => inFlight;
    cp.dropConnection();
    await waitFor(() => cp.connections() >= 2, 5000, 'a second connection');
    await standin.waitForIdle(5000);
    await waitFor(() => agent!.status().jobs.length === 0, 5000, 'job dropped');
    const heartbeat = await cp.waitFor('heartbeat', (m) => m.inFlight.length === 0);
    expect(heartbeat.healthy).toBe(true);
    expect(cp.ofType('job_completed')).toHaveLength(0);
  });

  it('hands jobs back and reports unhealthy when ComfyUI stops answering, then rejoins', async () => {
    cp = await startFakeControlPlane();
    start();
    await cp.waitFor('hello', (h) => h.healthy);
    const a = `job-a-${randomUUID()}`;
    const b = `job-b-${randomUUID()}`;
    assign(a, modelFreePrompt({ sleep: { seconds: 5, steps: 50, seed: 12 } }));
    assign(b, modelFreePrompt({ sleep: { seconds: 0.1, seed: 13 } }));
    await cp.waitFor('job_started', (m) => m.jobId === a);
    await standin.faults.setUnreachable('refuse');
    const ra = await cp.waitFor('job_released', (m) => m.jobId === a);
    const rb = await cp.waitFor('job_released', (m) => m.jobId === b);
    expect(ra.reason).toBe('comfyui_unreachable');
    expect(rb.reason).toBe('comfyui_unreachable');
    await cp.waitFor('heartbeat', (m) => !m.healthy && m.inFlight.length === 0);
    expect(agent!.status().comfyui.healthy).toBe(false);

    await standin.faults.setUnreachable(false);
    await waitFor(() => agent!.status().comfyui.healthy, 5000, 'healthy again');
    const n = cp.messages.length;
    await waitFor(
      () => cp.messages.slice(n).some((m) => m.msg.type === 'heartbeat' && m.msg.healthy),
      5000,
      'healthy heartbeat',
    );
    // The prompts it gave back do not run on after ComfyUI returns.
    await standin.waitForIdle(8000);
    // It takes work again.
    const c = `job-c-${randomUUID()}`;
    assign(c, modelFreePrompt({ color: 0x0a0b0c }));
    await cp.waitFor('job_completed', (m) => m.jobId === c);
    expect(cp.ofType('job_completed').some((m) => m.jobId === a || m.jobId === b)).toBe(false);
  });

  it('registers as unhealthy while ComfyUI is not up yet, then again with the real environment', async () => {
    cp = await startFakeControlPlane({ welcome: { needEnv: true } });
    await standin.faults.setUnreachable('refuse');
    start();
    const first = await cp.waitFor('hello');
    expect(first.healthy).toBe(false);
    expect(first.comfyuiVersion).toBe('unknown');
    await standin.faults.setUnreachable(false);
    const second = await cp.waitFor('hello', (h) => h.healthy);
    expect(second.envHash).not.toBe(first.envHash);
    expect((await cp.waitFor('env')).hash).toBe(second.envHash);
    const jobId = `job-${randomUUID()}`;
    assign(jobId, modelFreePrompt({ color: 0x0c0d0e }));
    await cp.waitFor('job_completed', (m) => m.jobId === jobId);
  });

  it('settles a job from ComfyUI history when its WebSocket dropped while the job ended', async () => {
    cp = await startFakeControlPlane();
    start();
    await cp.waitFor('hello', (h) => h.healthy);
    const jobId = `job-${randomUUID()}`;
    assign(jobId, modelFreePrompt({ sleep: { seconds: 0.05, steps: 1, seed: 16 } }));
    await cp.waitFor('job_started', (m) => m.jobId === jobId);
    // Reach into the agent's one ComfyUI socket and cut the TCP connection under it (a network
    // blip): the socket reconnects under the same client id, but what ComfyUI sent meanwhile is lost.
    const internals = agentInstance as unknown as { socket: { ws: { terminate(): void } | null } | null };
    internals.socket!.ws!.terminate();
    const done = await cp.waitFor('job_completed', (m) => m.jobId === jobId);
    expect(done.outputs).toHaveLength(1);
    await new Promise((r) => setTimeout(r, 300));
    expect(cp.ofType('job_completed').filter((m) => m.jobId === jobId)).toHaveLength(1);
  });

  it('stops gracefully: hands back queued jobs, lets the running one finish', async () => {
    cp = await startFakeControlPlane();
    start();
    await cp.waitFor('hello', (h) => h.healthy);
    const a = `job-a-${randomUUID()}`;
    const b = `job-b-${randomUUID()}`;
    assign(a, modelFreePrompt({ sleep: { seconds: 0.5, seed: 14 } }));
    assign(b, modelFreePrompt({ sleep: { seconds: 0.1, seed: 15 } }));
    await cp.waitFor('job_started', (m) => m.jobId === a);
    await waitFor(() => standin.state.pending.length === 1, 5000, 'b pending');
    const stopping = agent!.stop({ graceMs: 10_000 });
    // Still healthy (so its leases are renewed), but stopping: the server sends nothing new.
    await cp.waitFor('heartbeat', (m) => m.stopping === true && m.healthy);
    await cp.waitFor('job_released', (m) => m.jobId === b);
    await cp.waitFor('job_completed', (m) => m.jobId === a);
    await stopping;
    agent = undefined;
    expect(standin.state.pending).toHaveLength(0);
  });
});

describe('the ComfyUI frontend mirror', () => {
  const fixtures = fileURLToPath(new URL('../../../test/fixtures/', import.meta.url));
  /** A ComfyUI that serves a (small) web frontend and one custom node's web folder. */
  let web: Standin;
  beforeAll(async () => {
    web = await startStandin({
      frontendRoot: join(fixtures, 'mini-frontend'),
      extensionDirs: { hello: join(fixtures, 'mini-extension') },
    });
  });
  afterAll(() => web.close());

  it('offers the frontend its ComfyUI serves when the welcome asks, while running jobs', async () => {
    cp = await startFakeControlPlane({ welcome: { mirrorFrontend: true } });
    start({ comfyuiUrl: web.url });
    await cp.waitFor('hello', (h) => h.healthy);
    const jobId = `job-${randomUUID()}`;
    assign(jobId, modelFreePrompt({ color: 0x102030 }));
    await waitFor(() => cp.frontend.completed.length === 1, 10_000, 'the frontend mirror');
    await cp.waitFor('job_completed', (m) => m.jobId === jobId);

    const offer = cp.frontend.offers[0]!;
    expect(offer).toMatchObject({ source: 'http', comfyuiVersion: '0.3.64', frontendVersion: '0.0.1-mini' });
    const paths = offer.files.map((f) => f.path);
    expect(paths).toEqual(
      expect.arrayContaining(['index.html', 'assets/index-D4f9Lm2Q.js', 'extensions/hello/js/hello.js']),
    );
    for (const f of offer.files) expect(cp.frontend.blobs.get(f.sha256)?.length).toBe(f.size);
    // The agent marks it done once it has read the answer to its last request (later, under load).
    await waitFor(() => agent!.status().frontend.state === 'done', 10_000, 'the agent to see it done');
    expect(agent!.status().frontend).toMatchObject({
      state: 'done',
      versionId: cp.frontend.completed[0],
      files: offer.files.length,
    });

    // Connected again (a new welcome): the same frontend is offered again, nothing is re-sent.
    const puts = cp.frontend.puts.length;
    cp.dropConnection();
    await waitFor(() => cp.frontend.offers.length === 2, 10_000, 'a second offer');
    await waitFor(() => agent!.status().frontend.state === 'done', 5000, 'done again');
    expect(cp.frontend.puts).toHaveLength(puts);
  });

  it('never offers when the welcome does not ask, or when mirroring is turned off', async () => {
    cp = await startFakeControlPlane();
    start({ comfyuiUrl: web.url });
    await cp.waitFor('hello', (h) => h.healthy);
    await cp.waitFor('heartbeat');
    await new Promise((r) => setTimeout(r, 300));
    expect(cp.frontend.offers).toHaveLength(0);
    expect(agent!.status().frontend.state).toBe('idle');
    await agent!.stop();
    await cp.close();

    cp = await startFakeControlPlane({ welcome: { mirrorFrontend: true } });
    start({ comfyuiUrl: web.url, mirrorFrontend: false });
    await cp.waitFor('hello', (h) => h.healthy);
    await cp.waitFor('heartbeat');
    await new Promise((r) => setTimeout(r, 300));
    expect(cp.frontend.offers).toHaveLength(0);
    expect(agent!.status().frontend.state).toBe('disabled');
  });

  it('stops quietly when the control plane answers that it does not want a copy', async () => {
    cp = await startFakeControlPlane({ welcome: { mirrorFrontend: true } });
    cp.frontend.wanted = false;
    start({ comfyuiUrl: web.url });
    await waitFor(() => agent?.status().frontend.state === 'not_wanted', 10_000, 'not_wanted');
    expect(cp.frontend.puts).toHaveLength(0);
  });
});
