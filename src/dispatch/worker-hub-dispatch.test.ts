/**
 * The worker hub handing out jobs: prefetch and preemption, reports, cancels, leases, reconnects,
 * draining, and the job events and preview frames it relays onto the bus.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { encodePreviewFrame } from '../worker/protocol.js';
import type { JobBusMessage } from './job-event-bus.js';
import {
  ENV_WORKER_TOKEN,
  HubTestBed,
  PROMPT,
  sleep,
  until,
  type TestAgent,
} from '../../test/support/worker-hub-kit.js';

const bed = new HubTestBed();
const { start, agent, api, cleanups } = bed;
afterEach(bed.reset);

describe('dispatch', () => {
  it('pushes a job to an idle worker the moment it is enqueued', async () => {
    await start();
    const { agent: a } = await agent(ENV_WORKER_TOKEN, { prefetch: 0 });
    const t0 = Date.now();
    const job = await bed.cp.services.queue.enqueue({
      user: 'alice',
      prompt: PROMPT,
      metadata: { extraData: { extra_pnginfo: { workflow: {} } } },
    });
    const assign = await a.next('assign');
    expect(Date.now() - t0).toBeLessThan(500);
    expect(assign.job).toEqual({
      jobId: job.id,
      attempt: 1,
      user: 'alice',
      prompt: PROMPT,
      extraData: { extra_pnginfo: { workflow: {} } },
      front: false,
    });
    const stored = await bed.cp.store.getJob(job.id);
    expect(stored).toMatchObject({ status: 'running', workerId: 'envgpu:gpu1', attempts: 1 });
  });

  it('gives waiting jobs to a worker as soon as it registers, and the next one when it frees up', async () => {
    await start();
    const j1 = await bed.cp.services.queue.enqueue({ user: 'alice', prompt: PROMPT });
    const j2 = await bed.cp.services.queue.enqueue({ user: 'bob', prompt: PROMPT });
    const { agent: a } = await agent(ENV_WORKER_TOKEN, { prefetch: 0 });
    const first = await a.next('assign');
    expect(first.job.jobId).toBe(j1.id);
    expect(await a.none('assign', 150)).toBe(true); // one slot, no prefetch
    a.send({ type: 'job_started', jobId: j1.id, attempt: 1 });
    a.send({ type: 'job_completed', jobId: j1.id, attempt: 1, outputs: [] });
    const second = await a.next('assign');
    expect(second.job.jobId).toBe(j2.id);
    expect((await bed.cp.store.getJob(j1.id))?.status).toBe('completed');
  });

  it('respects the prefetch depth and fills idle workers before anyone prefetches', async () => {
    await start();
    const { agent: a } = await agent(ENV_WORKER_TOKEN, { name: 'a', prefetch: 1 });
    const { agent: b } = await agent(ENV_WORKER_TOKEN, { name: 'b', prefetch: 1 });
    const jobs = [];
    for (let i = 0; i < 5; i++)
      jobs.push(await bed.cp.services.queue.enqueue({ user: `u${i}`, prompt: PROMPT }));
    const got = [
      await a.next('assign'),
      await b.next('assign'),
      await a.next('assign'),
      await b.next('assign'),
    ];
    // The first two jobs went one to each worker (running slots), the next two are prefetched.
    expect(new Set([got[0]!.job.jobId, got[1]!.job.jobId])).toEqual(new Set([jobs[0]!.id, jobs[1]!.id]));
    expect(await a.none('assign', 150)).toBe(true);
    expect(await b.none('assign', 0)).toBe(true);
    expect((await bed.cp.store.getJob(jobs[4]!.id))?.status).toBe('pending');
    const list = (await (await api('/api/v1/workers')).json()) as {
      workers: { id: string; status: string; heldJobs: unknown[]; slots: number }[];
    };
    expect(list.workers.map((w) => [w.id, w.status, w.heldJobs.length, w.slots])).toEqual([
      ['envgpu:a', 'busy', 2, 2],
      ['envgpu:b', 'busy', 2, 2],
    ]);
    // a finishes its running job: it gets the fifth.
    a.send({ type: 'job_completed', jobId: got[0]!.job.jobId, attempt: 1, outputs: [] });
    expect((await a.next('assign')).job.jobId).toBe(jobs[4]!.id);
  });

  it('treats a duplicate completion as harmless and ignores a stale attempt', async () => {
    await start();
    const { agent: a } = await agent(ENV_WORKER_TOKEN, { prefetch: 0 });
    const job = await bed.cp.services.queue.enqueue({ user: 'alice', prompt: PROMPT });
    await a.next('assign');
    // Reported under the job's own name, recorded under the participant's (ComfyUI's naming).
    const reported = [
      { nodeId: '9', filename: 'x_00001_.png', subfolder: job.id, type: 'output' as const, kind: 'images' },
    ];
    const outputs = [{ ...reported[0]!, subfolder: '' }];
    const finished: string[] = [];
    const onEvent = (e: { type: string }) => finished.push(e.type);
    bed.cp.services.queue.on('event', onEvent);
    cleanups.push(() => bed.cp.services.queue.off('event', onEvent));
    a.send({ type: 'job_completed', jobId: job.id, attempt: 1, outputs: reported });
    a.send({ type: 'job_completed', jobId: job.id, attempt: 1, outputs: [] });
    a.send({
      type: 'job_failed',
      jobId: job.id,
      attempt: 1,
      error: { reason: 'execution_error', message: 'late' },
    });
    a.send({ type: 'job_completed', jobId: job.id, attempt: 7, outputs: [] });
    await until(async () => (await bed.cp.store.getJob(job.id))?.status === 'completed', 3000, 'completed');
    await sleep(100);
    const stored = await bed.cp.store.getJob(job.id);
    expect(stored).toMatchObject({ status: 'completed', attempts: 1, outputs, error: null });
    expect(finished.filter((t) => t === 'finished')).toHaveLength(1);
    expect(a.inbox.filter((m) => m.type === 'error')).toEqual([]); // not protocol errors
    expect(bed.cp.services.workers.view('envgpu:gpu1')).toMatchObject({ status: 'idle', jobsCompleted: 1 });
  });

  it('ignores a report from a worker that does not hold the job', async () => {
    await start();
    const { agent: a } = await agent(ENV_WORKER_TOKEN, { name: 'a', prefetch: 0 });
    const { agent: b } = await agent(ENV_WORKER_TOKEN, { name: 'b', prefetch: 0 });
    const job = await bed.cp.services.queue.enqueue({ user: 'alice', prompt: PROMPT });
    const holder = await Promise.race([a.next('assign').then(() => a), b.next('assign').then(() => b)]);
    const other = holder === a ? b : a;
    other.send({ type: 'job_completed', jobId: job.id, attempt: 1, outputs: [] });
    await sleep(100);
    expect((await bed.cp.store.getJob(job.id))?.status).toBe('running');
    holder.send({
      type: 'job_failed',
      jobId: job.id,
      attempt: 1,
      error: { reason: 'execution_error', message: 'boom', nodeId: '1' },
    });
    await until(async () => (await bed.cp.store.getJob(job.id))?.status === 'failed', 3000, 'failed');
    expect((await bed.cp.store.getJob(job.id))?.error).toMatchObject({
      reason: 'execution_error',
      nodeId: '1',
    });
  });

  it('forwards a cancel to the worker and frees the slot when it confirms', async () => {
    await start();
    const { agent: a } = await agent(ENV_WORKER_TOKEN, { prefetch: 0 });
    const j1 = await bed.cp.services.queue.enqueue({ user: 'alice', prompt: PROMPT });
    const j2 = await bed.cp.services.queue.enqueue({ user: 'bob', prompt: PROMPT });
    await a.next('assign');
    a.send({ type: 'job_started', jobId: j1.id, attempt: 1 });
    const res = await api(`/api/v1/jobs/${j1.id}`, { method: 'DELETE' });
    expect(res.status).toBe(200);
    expect(await a.next('cancel')).toEqual({ type: 'cancel', jobId: j1.id, attempt: 1 });
    // ComfyUI is still interrupting: the slot stays taken until the agent confirms.
    expect(await a.none('assign', 150)).toBe(true);
    a.send({ type: 'job_cancelled', jobId: j1.id, attempt: 1 });
    expect((await a.next('assign')).job.jobId).toBe(j2.id);
    expect((await bed.cp.store.getJob(j1.id))?.status).toBe('cancelled');
  });

  it('asks for a prefetched job back when another is moved to the front while all slots are full', async () => {
    await start();
    const { agent: a } = await agent(ENV_WORKER_TOKEN, { prefetch: 1 });
    const q = bed.cp.services.queue;
    const j1 = await q.enqueue({ user: 'u1', prompt: PROMPT });
    const j2 = await q.enqueue({ user: 'u2', prompt: PROMPT });
    const j3 = await q.enqueue({ user: 'u3', prompt: PROMPT });
    const j4 = await q.enqueue({ user: 'u4', prompt: PROMPT });
    expect((await a.next('assign')).job.jobId).toBe(j1.id);
    expect((await a.next('assign')).job.jobId).toBe(j2.id);
    a.send({ type: 'job_started', jobId: j1.id, attempt: 1 });
    a.send({
      type: 'heartbeat',
      healthy: true,
      devices: [],
      inFlight: [
        { jobId: j1.id, attempt: 1, state: 'running' },
        { jobId: j2.id, attempt: 1, state: 'queued' },
      ],
    });
    await sleep(50);

    const res = await api(`/api/v1/jobs/${j4.id}`, {
      method: 'PATCH',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ front: true }),
    });
    expect(res.status).toBe(200);
    // The running job is never asked for; the prefetched one is.
    expect(await a.next('release')).toEqual({ type: 'release', jobId: j2.id, attempt: 1 });
    a.send({ type: 'job_released', jobId: j2.id, attempt: 1, reason: 'asked' });
    const next = await a.next('assign');
    expect(next.job.jobId).toBe(j4.id);
    expect(next.job.front).toBe(true);
    expect(await bed.cp.store.getJob(j2.id)).toMatchObject({ status: 'pending', attempts: 0 });
    expect((await bed.cp.store.getJob(j3.id))?.status).toBe('pending');
  });

  it('counts an attempt when a job was running as its ComfyUI died, and fails it after MAX_ATTEMPTS', async () => {
    await start({ MAX_ATTEMPTS: '2' });
    const { agent: a } = await agent(ENV_WORKER_TOKEN, { prefetch: 0 });
    const job = await bed.cp.services.queue.enqueue({ user: 'u1', prompt: PROMPT });
    for (const attempt of [1, 2]) {
      const assigned = await a.next('assign');
      expect(assigned.job).toMatchObject({ jobId: job.id, attempt });
      a.send({ type: 'job_started', jobId: job.id, attempt });
      await sleep(30);
      a.send({ type: 'job_released', jobId: job.id, attempt, reason: 'comfyui_unreachable' });
    }
    await until(async () => (await bed.cp.store.getJob(job.id))?.status === 'failed', 5000);
    expect(await bed.cp.store.getJob(job.id)).toMatchObject({
      attempts: 2,
      error: { reason: 'worker_lost' },
    });
  });

  it('does not count an attempt for a job given back before ComfyUI started it', async () => {
    await start();
    const { agent: a } = await agent(ENV_WORKER_TOKEN, { prefetch: 0 });
    const job = await bed.cp.services.queue.enqueue({ user: 'u1', prompt: PROMPT });
    await a.next('assign');
    a.send({ type: 'job_released', jobId: job.id, attempt: 1, reason: 'comfyui_unreachable' });
    const again = await a.next('assign');
    expect(again.job).toMatchObject({ jobId: job.id, attempt: 1 });
  });

  it('does not preempt when the moved job would not be served earlier', async () => {
    await start({ QUEUE_MODE: 'fifo' });
    const { agent: a } = await agent(ENV_WORKER_TOKEN, { prefetch: 1 });
    const q = bed.cp.services.queue;
    const j1 = await q.enqueue({ user: 'u1', prompt: PROMPT });
    await q.enqueue({ user: 'u2', prompt: PROMPT, front: true });
    await a.next('assign');
    await a.next('assign');
    a.send({ type: 'job_started', jobId: j1.id, attempt: 1 });
    const j3 = await q.enqueue({ user: 'u3', prompt: PROMPT });
    await q.update(j3.id, { priority: 'high' }); // fifo ignores priority
    expect(await a.none('release', 200)).toBe(true);
  });

  it('renews leases on heartbeats', async () => {
    await start({ LEASE_MS: '1000', HEARTBEAT_MS: '200' });
    const { agent: a } = await agent(ENV_WORKER_TOKEN, { prefetch: 0 });
    const job = await bed.cp.services.queue.enqueue({ user: 'alice', prompt: PROMPT });
    await a.next('assign');
    a.heartbeatEvery(150, () => [{ jobId: job.id, attempt: 1, state: 'running' }]);
    await sleep(1400);
    await bed.cp.services.queue.sweep();
    const stored = await bed.cp.store.getJob(job.id);
    expect(stored).toMatchObject({ status: 'running', attempts: 1, workerId: 'envgpu:gpu1' });
    expect(stored!.leaseExpiresAt!).toBeGreaterThan(Date.now());
    expect(bed.cp.services.workers.view('envgpu:gpu1')?.currentJob).toMatchObject({ jobId: job.id });
  });

  it('returns a job to the queue when a connected worker stops reporting it', async () => {
    await start({ LEASE_MS: '5000', HEARTBEAT_MS: '200' });
    const { agent: a } = await agent(ENV_WORKER_TOKEN, { prefetch: 0 });
    const job = await bed.cp.services.queue.enqueue({ user: 'alice', prompt: PROMPT });
    await a.next('assign');
    // One heartbeat without it may have crossed the assign on the wire: nothing happens.
    a.send({ type: 'heartbeat', healthy: true, devices: [], inFlight: [] });
    expect(await a.none('cancel', 200)).toBe(true);
    expect((await bed.cp.store.getJob(job.id))?.status).toBe('running');
    // The second one in a row: the worker has lost it. Back to the queue, long before the lease ends.
    a.send({ type: 'heartbeat', healthy: true, devices: [], inFlight: [] });
    expect(await a.next('cancel')).toEqual({ type: 'cancel', jobId: job.id, attempt: 1 });
    // A new attempt, so nothing the lost one might still say is mistaken for it.
    const again = await a.next('assign');
    expect(again).toMatchObject({ job: { jobId: job.id, attempt: 2 } });
    expect(await bed.cp.store.getJob(job.id)).toMatchObject({ status: 'running', attempts: 2 });
  });

  it('sends nothing new to a worker that is stopping, and keeps renewing what it holds', async () => {
    await start({ LEASE_MS: '1000', HEARTBEAT_MS: '200' });
    // Room for a prefetched job besides the running one, so only `stopping` keeps bob's job away.
    const { agent: a } = await agent(ENV_WORKER_TOKEN, { prefetch: 1 });
    const job = await bed.cp.services.queue.enqueue({ user: 'alice', prompt: PROMPT });
    await a.next('assign');
    const beat = setInterval(
      () =>
        a.send({
          type: 'heartbeat',
          healthy: true,
          stopping: true,
          devices: [],
          inFlight: [{ jobId: job.id, attempt: 1, state: 'running' }],
        }),
      150,
    );
    cleanups.push(() => clearInterval(beat));
    await until(() => bed.cp.services.workers.view('envgpu:gpu1')?.status === 'draining', 2000, 'draining');
    expect(bed.cp.services.workers.view('envgpu:gpu1')).toMatchObject({ stopping: true, draining: false });
    await bed.cp.services.queue.enqueue({ user: 'bob', prompt: PROMPT });
    await sleep(1400); // longer than the lease
    await bed.cp.services.queue.sweep();
    expect(await bed.cp.store.getJob(job.id)).toMatchObject({ status: 'running', attempts: 1 });
    expect(await a.none('assign', 100)).toBe(true);
  });

  it("tells a participant which of their jobs runs and which only waits in ComfyUI's queue", async () => {
    await start({ MAX_RUNNING_PER_USER: '2' });
    await bed.cp.services.accounts.create('alice', 'participant', 'alice-password-0123');
    const { agent: a } = await agent(ENV_WORKER_TOKEN, { prefetch: 1 });
    const first = await bed.cp.services.queue.enqueue({ user: 'alice', prompt: PROMPT });
    await bed.cp.services.queue.enqueue({ user: 'alice', prompt: PROMPT });
    await a.next('assign');
    await a.next('assign');
    a.send({ type: 'job_started', jobId: first.id, attempt: 1 });
    const status = async () =>
      (await fetch(`${bed.cp.url}/alice/comfy-multi/status`, {
        headers: { authorization: `Basic ${Buffer.from('alice:alice-password-0123').toString('base64')}` },
      }).then((r) => r.json())) as { running: number; startingSoon: number; pending: number };
    await until(async () => (await status()).running === 1, 2000, 'one running');
    expect(await status()).toMatchObject({ running: 1, startingSoon: 1, pending: 0 });
  });

  it('lets leases lapse while the worker reports ComfyUI unhealthy', async () => {
    await start({ LEASE_MS: '1000', HEARTBEAT_MS: '200' });
    const { agent: a } = await agent(ENV_WORKER_TOKEN, { prefetch: 0 });
    const job = await bed.cp.services.queue.enqueue({ user: 'alice', prompt: PROMPT });
    await a.next('assign');
    const beat = setInterval(
      () => a.send({ type: 'heartbeat', healthy: false, devices: [], inFlight: [] }),
      150,
    );
    cleanups.push(() => clearInterval(beat));
    await until(() => bed.cp.services.workers.view('envgpu:gpu1')?.status === 'unhealthy', 2000, 'unhealthy');
    await sleep(1100);
    await bed.cp.services.queue.sweep();
    expect(await bed.cp.store.getJob(job.id)).toMatchObject({ status: 'pending', attempts: 1 });
    // The worker is told to stop the attempt it lost.
    expect(await a.next('cancel')).toEqual({ type: 'cancel', jobId: job.id, attempt: 1 });
    // And it gets nothing new while unhealthy.
    expect(await a.none('assign', 150)).toBe(true);
  });

  it('on disconnect keeps the job claimed until its lease lapses, then the sweeper requeues it', async () => {
    await start({ LEASE_MS: '1000', HEARTBEAT_MS: '200' });
    const { agent: a } = await agent(ENV_WORKER_TOKEN, { prefetch: 0 });
    const job = await bed.cp.services.queue.enqueue({ user: 'alice', prompt: PROMPT });
    await a.next('assign');
    await a.terminate();
    await until(() => bed.cp.services.workers.view('envgpu:gpu1')?.status === 'offline', 2000, 'offline');
    await bed.cp.services.queue.sweep();
    expect((await bed.cp.store.getJob(job.id))?.status).toBe('running'); // not requeued at once
    await sleep(1100);
    await bed.cp.services.queue.sweep();
    expect(await bed.cp.store.getJob(job.id)).toMatchObject({
      status: 'pending',
      attempts: 1,
      workerId: null,
    });

    // Another worker takes it as attempt 2.
    const { agent: b } = await agent(ENV_WORKER_TOKEN, { name: 'other', prefetch: 0 });
    const assign = await b.next('assign');
    expect(assign.job).toMatchObject({ jobId: job.id, attempt: 2 });
    const workers = (await (await api('/api/v1/workers')).json()) as {
      workers: { id: string; status: string }[];
    };
    expect(workers.workers.map((w) => [w.id, w.status])).toEqual([
      ['envgpu:gpu1', 'offline'],
      ['envgpu:other', 'busy'],
    ]);
  });

  it('on reconnect keeps the in-flight jobs the store still gives it and tells it to forget the rest', async () => {
    await start();
    const first = await agent(ENV_WORKER_TOKEN, { prefetch: 1 });
    const j1 = await bed.cp.services.queue.enqueue({ user: 'alice', prompt: PROMPT });
    const j2 = await bed.cp.services.queue.enqueue({ user: 'bob', prompt: PROMPT });
    await first.agent.next('assign');
    await first.agent.next('assign');
    await first.agent.terminate();
    await bed.cp.services.queue.cancel(j2.id); // cancelled while the worker was away
    const j3 = await bed.cp.services.queue.enqueue({ user: 'carol', prompt: PROMPT });

    const again = await agent(ENV_WORKER_TOKEN, {
      prefetch: 1,
      inFlight: [
        { jobId: j1.id, attempt: 1, state: 'running' },
        { jobId: j2.id, attempt: 1, state: 'queued' },
        { jobId: 'no-such-job', attempt: 1, state: 'queued' },
      ],
    });
    expect(again.welcome.forget).toEqual([
      { jobId: j2.id, attempt: 1 },
      { jobId: 'no-such-job', attempt: 1 },
    ]);
    // j1 is still its own; the freed prefetch slot goes to j3.
    expect((await again.agent.next('assign')).job.jobId).toBe(j3.id);
    expect(await bed.cp.store.getJob(j1.id)).toMatchObject({
      status: 'running',
      attempts: 1,
      workerId: 'envgpu:gpu1',
    });
    expect(
      bed.cp.services.workers
        .view('envgpu:gpu1')
        ?.heldJobs.map((h) => h.jobId)
        .sort(),
    ).toEqual([j1.id, j3.id].sort());
    again.agent.send({ type: 'job_completed', jobId: j1.id, attempt: 1, outputs: [] });
    await until(async () => (await bed.cp.store.getJob(j1.id))?.status === 'completed', 3000, 'completed');
  });

  it('closes the older connection when the same worker connects again', async () => {
    await start();
    const first = await agent(ENV_WORKER_TOKEN, { prefetch: 0 });
    const second = await agent(ENV_WORKER_TOKEN, { prefetch: 0 });
    expect(await first.agent.closed).toBe(4000);
    const job = await bed.cp.services.queue.enqueue({ user: 'alice', prompt: PROMPT });
    expect((await second.agent.next('assign')).job.jobId).toBe(job.id);
    expect(bed.cp.services.workers.view('envgpu:gpu1')?.status).toBe('busy');
  });

  it('drains: no new jobs, held ones finish; undrain resumes', async () => {
    await start();
    const { agent: a } = await agent(ENV_WORKER_TOKEN, { prefetch: 0 });
    const j1 = await bed.cp.services.queue.enqueue({ user: 'alice', prompt: PROMPT });
    await a.next('assign');
    const drain = await api('/api/v1/workers/envgpu:gpu1/drain', { method: 'POST' });
    expect(drain.status).toBe(200);
    expect(await drain.json()).toMatchObject({ id: 'envgpu:gpu1', draining: true, status: 'draining' });
    expect(await a.next('drain')).toEqual({ type: 'drain', draining: true });
    const j2 = await bed.cp.services.queue.enqueue({ user: 'bob', prompt: PROMPT });
    a.send({ type: 'job_completed', jobId: j1.id, attempt: 1, outputs: [] });
    await until(async () => (await bed.cp.store.getJob(j1.id))?.status === 'completed', 3000, 'completed');
    expect(await a.none('assign', 150)).toBe(true);

    const undrain = await api('/api/v1/workers/envgpu:gpu1/drain', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ draining: false }),
    });
    expect(await undrain.json()).toMatchObject({ draining: false });
    expect(await a.next('drain')).toEqual({ type: 'drain', draining: false });
    expect((await a.next('assign')).job.jobId).toBe(j2.id);
  });

  it('keeps a worker drained across a reconnect', async () => {
    await start();
    const first = await agent(ENV_WORKER_TOKEN, { prefetch: 0 });
    await api('/api/v1/workers/envgpu:gpu1/drain', { method: 'POST' });
    await first.agent.close();
    const again = await agent(ENV_WORKER_TOKEN, { prefetch: 0 });
    expect(await again.agent.next('drain')).toEqual({ type: 'drain', draining: true });
    await bed.cp.services.queue.enqueue({ user: 'alice', prompt: PROMPT });
    expect(await again.agent.none('assign', 150)).toBe(true);
  });

  it('re-emits job events and preview frames on the bus, by user, and tracks progress', async () => {
    await start();
    const { agent: a } = await agent(ENV_WORKER_TOKEN, { prefetch: 0 });
    const seen: JobBusMessage[] = [];
    const others: JobBusMessage[] = [];
    cleanups.push(bed.cp.services.bus.subscribeUser('alice', (m) => seen.push(m)));
    cleanups.push(bed.cp.services.bus.subscribeUser('bob', (m) => others.push(m)));
    const job = await bed.cp.services.queue.enqueue({ user: 'alice', prompt: PROMPT });
    await a.next('assign');
    a.send({ type: 'job_started', jobId: job.id, attempt: 1 });
    a.send({
      type: 'job_event',
      jobId: job.id,
      attempt: 1,
      event: { type: 'executing', data: { node: '3', prompt_id: job.id } },
    });
    a.send({
      type: 'job_event',
      jobId: job.id,
      attempt: 1,
      event: { type: 'progress', data: { value: 4, max: 20, node: '3', prompt_id: job.id } },
    });
    const comfyFrame = Buffer.concat([Buffer.from([0, 0, 0, 1, 0, 0, 0, 2]), Buffer.from('jpegbytes')]);
    a.sendRaw(encodePreviewFrame(job.id, comfyFrame), true);
    a.sendRaw(encodePreviewFrame('someone-elses-job', comfyFrame), true); // not held: dropped
    await until(() => seen.some((m) => m.kind === 'preview'), 3000, 'preview');
    expect(
      seen.map((m) =>
        m.kind === 'status' ? `status:${m.status}` : m.kind === 'event' ? `event:${m.event.type}` : 'preview',
      ),
    ).toEqual([
      'status:queued',
      'status:assigned',
      'status:started',
      'event:executing',
      'event:progress',
      'preview',
    ]);
    const preview = seen.find((m) => m.kind === 'preview');
    expect(preview).toMatchObject({ jobId: job.id, user: 'alice', workerId: 'envgpu:gpu1' });
    expect(preview?.kind === 'preview' && preview.preview.equals(comfyFrame)).toBe(true);
    expect(others).toEqual([]);
    expect(bed.cp.services.workers.view('envgpu:gpu1')?.currentJob).toMatchObject({
      jobId: job.id,
      user: 'alice',
      node: '3',
      progress: { value: 4, max: 20 },
    });
  });

  /** A worker that numbers its events, and what alice's bus gets of them (`<type>:<label>`). */
  async function numberedWorker(label: (data: unknown) => string) {
    await start();
    const token = await bed.cp.token('gpu');
    const numbered = { prefetch: 0, eventSeq: true, acks: true };
    const { agent: a } = await agent(token, numbered);
    const seen: string[] = [];
    cleanups.push(
      bed.cp.services.bus.subscribeUser('alice', (m) => {
        if (m.kind === 'event') seen.push(`${m.event.type}:${label(m.event.data)}`);
      }),
    );
    const job = await bed.cp.services.queue.enqueue({ user: 'alice', prompt: PROMPT });
    /** The same worker connecting again, still running the job. */
    const reconnect = async () =>
      (await agent(token, { ...numbered, inFlight: [{ jobId: job.id, attempt: 1, state: 'running' }] }))
        .agent;
    return { a, seen, job, reconnect };
  }
  const progressValue = (data: unknown) => String((data as { value?: number }).value ?? '');

  it('a worker that reconnects and sends its numbered events again: the owner gets those it missed, none twice', async () => {
    const { a: first, seen, job, reconnect } = await numberedWorker(progressValue);
    await first.next('assign');
    const events = [1, 2, 3, 4, 5].map((value) => ({
      type: 'progress',
      data: { value, max: 5, node: '3', prompt_id: job.id },
    }));
    const send = (a: TestAgent, from: number, to: number) => {
      for (let seq = from; seq < to; seq++)
        a.send({ type: 'job_event', jobId: job.id, attempt: 1, event: events[seq]!, seq });
    };
    send(first, 0, 3);
    await until(() => seen.length === 3, 3000, 'three events');
    await first.terminate();
    const second = await reconnect();
    send(second, 0, 5);
    second.send({ type: 'job_completed', jobId: job.id, attempt: 1, outputs: [] });
    await second.next('ack');
    expect(seen).toEqual(['progress:1', 'progress:2', 'progress:3', 'progress:4', 'progress:5']);
  });

  it('an attempt handed back and run again numbers its events anew: the second run is not taken for a repeat', async () => {
    const { a, seen, job } = await numberedWorker(progressValue);
    const first = await a.next('assign');
    const progress = (run: string, seq: number, value: number) =>
      a.send({
        type: 'job_event',
        jobId: job.id,
        attempt: first.job.attempt,
        event: { type: 'progress', data: { value, max: 9, node: '3', prompt_id: job.id } },
        seq,
        run,
      });
    progress('run-1', 0, 1);
    progress('run-1', 1, 2);
    await until(() => seen.length === 2, 3000, 'the first run');
    // Given back before ComfyUI counted it (the worker was stopping): same attempt, next run.
    a.send({ type: 'job_released', jobId: job.id, attempt: first.job.attempt, reason: 'worker stopping' });
    await a.next('ack');
    const again = await a.next('assign');
    expect(again.job.attempt).toBe(first.job.attempt);
    progress('run-2', 0, 7);
    progress('run-2', 1, 8);
    await until(() => seen.length === 4, 3000, 'the second run');
    expect(seen).toEqual(['progress:1', 'progress:2', 'progress:7', 'progress:8']);
  });

  it("a worker that reconnects between ComfyUI's verdict and its report: the owner gets ComfyUI's own ending once", async () => {
    const { a: first, seen, job, reconnect } = await numberedWorker((data) => JSON.stringify(data));
    await first.next('assign');
    const events = [
      { type: 'execution_start', data: { prompt_id: job.id, timestamp: 1 } },
      { type: 'execution_success', data: { prompt_id: job.id, timestamp: 2 } },
      { type: 'executing', data: { node: null, prompt_id: job.id } },
    ];
    const send = (a: TestAgent) =>
      events.forEach((event, seq) =>
        a.send({ type: 'job_event', jobId: job.id, attempt: 1, event, seq, run: 'r' }),
      );
    send(first);
    // One process passes ComfyUI's success on at once (outputs may be announced early); its final
    // `executing` waits for the report.
    await until(() => seen.length === 2, 3000, 'execution_start and the success');
    await first.terminate();
    const second = await reconnect();
    send(second);
    second.send({ type: 'job_completed', jobId: job.id, attempt: 1, outputs: [] });
    await second.next('ack');
    await until(() => seen.length === 3, 3000, 'the ending');
    expect(seen).toEqual(events.map((e) => `${e.type}:${JSON.stringify(e.data)}`));
  });
});
