/**
 * A job's life across trouble on the worker's side: a revoked token, reports that must be
 * acknowledged, a worker that comes back after its leases lapsed, two attempts finishing.
 * Real control plane (SQLite, HTTP on a free port), scripted agents over real WebSockets.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CLOSE_TOKEN_REVOKED } from '../worker/protocol.js';
import {
  PROMPT,
  TestAgent,
  rawRequest,
  startControlPlane,
  until,
  type ControlPlane,
} from '../../test/support/worker-hub-kit.js';

let cp: ControlPlane | undefined;
const agents: TestAgent[] = [];

async function agent(token: string, hello: Parameters<typeof TestAgent.register>[2] = {}) {
  const r = await TestAgent.register(cp!.wsUrl, token, { acks: true, ...hello });
  agents.push(r.agent);
  return r;
}

afterEach(async () => {
  for (const a of agents.splice(0)) await a.close();
  await cp?.close();
  cp = undefined;
});

const job = (id: string) => cp!.store.getJob(id);

/** Runs the lease sweeper (the test control plane does not start its timer) until the job is pending. */
const lapsed = (id: string) =>
  until(
    async () => {
      await cp!.services.queue.sweep();
      return (await job(id))?.status === 'pending';
    },
    15_000,
    'lease lapsed',
  );

describe('revoking a worker token', () => {
  it('closes the connection (4004) and gives its jobs back uncounted, even when revoked by another process', async () => {
    cp = await startControlPlane({ HEARTBEAT_MS: '300', LEASE_MS: '3000' });
    const token = await cp.token('gpu-r');
    const { agent: a } = await agent(token, { name: 'r1' });
    const j = await cp.services.queue.enqueue({ user: 'alice', prompt: PROMPT });
    const assigned = await a.next('assign');
    expect(assigned.job.jobId).toBe(j.id);
    a.heartbeatEvery(100, () => [{ jobId: j.id, attempt: 1, state: 'running' }]);
    // The CLI revokes in its own process: straight in the store, the server is not told.
    expect(await cp.store.revokeWorkerToken('gpu-r', Date.now())).toBe(true);
    expect(await a.closed).toBe(CLOSE_TOKEN_REVOKED);
    await until(async () => (await job(j.id))?.status === 'pending', 10_000, 'job back in the queue');
    // Not a lost attempt: the next claim is attempt 1 again, and nothing failed.
    expect(await job(j.id)).toMatchObject({ status: 'pending', attempts: 0, error: null });
    await until(() => cp!.services.hub.connections === 0, 3000, 'connection gone');
    // An upload with the revoked token is refused and the job is untouched.
    const put = await rawRequest(
      cp.url,
      'PUT',
      `/worker/v1/jobs/${j.id}/attempts/1/outputs/9/${j.id}/x.png`,
      {
        headers: { authorization: `Bearer ${token}` },
        body: 'png',
      },
    );
    expect(put.status).toBe(401);
    // Another worker gets it as a fresh first attempt and finishes it.
    const other = await agent(await cp.token('gpu-s'), { name: 's1' });
    const again = await other.agent.next('assign');
    expect(again.job).toMatchObject({ jobId: j.id, attempt: 1 });
    other.agent.send({ type: 'job_completed', jobId: j.id, attempt: 1, outputs: [] });
    await other.agent.next('ack', (m) => m.jobId === j.id);
    expect(await job(j.id)).toMatchObject({ status: 'completed', attempts: 1 });
  });

  it('gives the worker no job between the revoke and its next heartbeat', async () => {
    cp = await startControlPlane({ HEARTBEAT_MS: '60000', LEASE_MS: '180000' });
    const token = await cp.token('gpu-q');
    const { agent: a } = await agent(token, { name: 'q1' });
    await cp.store.revokeWorkerToken('gpu-q', Date.now());
    const j = await cp.services.queue.enqueue({ user: 'alice', prompt: PROMPT });
    expect(await a.closed).toBe(CLOSE_TOKEN_REVOKED);
    expect(a.inbox.some((m) => m.type === 'assign')).toBe(false);
    expect(await job(j.id)).toMatchObject({ status: 'pending', attempts: 0 });
  });
});

describe('reports are acknowledged once recorded', () => {
  it('acks each report after the store has it, only to agents that asked for acks', async () => {
    cp = await startControlPlane();
    const { agent: a, welcome } = await agent(await cp.token('gpu-a'), { name: 'a1' });
    expect(welcome.acks).toBe(true);
    const j = await cp.services.queue.enqueue({ user: 'alice', prompt: PROMPT });
    await a.next('assign');
    a.send({ type: 'job_completed', jobId: j.id, attempt: 1, outputs: [] });
    const ack = await a.next('ack');
    expect(ack).toEqual({ type: 'ack', report: 'job_completed', jobId: j.id, attempt: 1 });
    expect((await job(j.id))?.status).toBe('completed');
    // A repeat (the ack was lost) is acked again and changes nothing.
    a.send({ type: 'job_completed', jobId: j.id, attempt: 1, outputs: [] });
    await a.next('ack');

    await a.close();

    const old = await TestAgent.register(cp.wsUrl, await cp.token('gpu-o'), { name: 'o1' });
    agents.push(old.agent);
    expect(old.welcome.acks).toBe(true);
    const k = await cp.services.queue.enqueue({ user: 'bob', prompt: PROMPT });
    await old.agent.next('assign');
    old.agent.send({ type: 'job_completed', jobId: k.id, attempt: 1, outputs: [] });
    await until(async () => (await job(k.id))?.status === 'completed', 3000, 'completed');
    expect(await old.agent.none('ack', 200)).toBe(true);
  });
});

describe('a store that fails while a report arrives', () => {
  it('does not acknowledge a report the store did not record; the repeat is recorded and acked', async () => {
    cp = await startControlPlane();
    const { agent: a } = await agent(await cp.token('gpu-f'), { name: 'f1' });
    const j = await cp.services.queue.enqueue({ user: 'alice', prompt: PROMPT });
    await a.next('assign');
    // The store goes away for one write (Redis restarting, say).
    const store = cp.store;
    const complete = store.complete.bind(store);
    let failures = 1;
    store.complete = async (...args) => {
      if (failures-- > 0) throw new Error('Connection is closed.');
      return complete(...args);
    };
    a.send({ type: 'job_completed', jobId: j.id, attempt: 1, outputs: [] });
    expect(await a.next('error')).toMatchObject({ code: 'internal' });
    expect(await a.none('ack', 300)).toBe(true);
    expect((await job(j.id))?.status).toBe('running');
    // Still held by the worker meanwhile, so its lease keeps being renewed.
    expect(cp.services.workers.view(a.workerId)?.heldJobs.map((h) => h.jobId)).toEqual([j.id]);
    // The agent sends it again (overdue ack, or after reconnecting): now it counts.
    a.send({ type: 'job_completed', jobId: j.id, attempt: 1, outputs: [] });
    expect(await a.next('ack')).toMatchObject({ jobId: j.id, attempt: 1 });
    expect(await job(j.id)).toMatchObject({ status: 'completed', attempts: 1 });
  });
});

describe('a worker that comes back after its leases lapsed', () => {
  it('re-adopts a lapsed job it still runs instead of letting it run again', async () => {
    cp = await startControlPlane({ HEARTBEAT_MS: '300', LEASE_MS: '1000' });
    const token = await cp.token('gpu-b');
    const first = await agent(token, { name: 'b1' });
    const j = await cp.services.queue.enqueue({ user: 'alice', prompt: PROMPT });
    await first.agent.next('assign');
    await first.agent.terminate();
    await lapsed(j.id);
    // Back, still running it: the job is ours again, same attempt, not forgotten.
    const back = await agent(token, {
      name: 'b1',
      inFlight: [{ jobId: j.id, attempt: 1, state: 'running' }],
    });
    expect(back.welcome.forget).toEqual([]);
    expect(await job(j.id)).toMatchObject({ status: 'running', attempts: 1, workerId: 'gpu-b:b1' });
    back.agent.send({ type: 'job_completed', jobId: j.id, attempt: 1, outputs: [] });
    await back.agent.next('ack');
    expect(await job(j.id)).toMatchObject({ status: 'completed', attempts: 1 });
  });

  it('accepts the first finish when the job already runs elsewhere, and tells the other worker to stop', async () => {
    cp = await startControlPlane({ HEARTBEAT_MS: '300', LEASE_MS: '1000' });
    const token = await cp.token('gpu-c');
    const first = await agent(token, { name: 'c1' });
    const j = await cp.services.queue.enqueue({ user: 'alice', prompt: PROMPT });
    await first.agent.next('assign');
    await first.agent.terminate();
    await lapsed(j.id);
    const tokenD = await cp.token('gpu-d');
    const second = await agent(tokenD, { name: 'd1' });
    second.agent.heartbeatEvery(100, () => [{ jobId: j.id, attempt: 2, state: 'running' }]);
    const re = await second.agent.next('assign', () => true, 15_000);
    expect(re.job).toMatchObject({ jobId: j.id, attempt: 2 });
    // The later attempt has uploaded part of its outputs already.
    const partial = await rawRequest(
      cp.url,
      'PUT',
      `/worker/v1/jobs/${j.id}/attempts/2/outputs/9/${j.id}/b.png`,
      { headers: { authorization: `Bearer ${tokenD}` }, body: 'other' },
    );
    expect(partial.status).toBe(200);
    const outDir = join(cp.dir, 'files', 'alice', 'output', j.id);
    expect(readdirSync(outDir)).toEqual(['b.png']);
    // The first worker had finished (its outputs uploaded late, its report delivered on reconnect).
    const back = await agent(token, { name: 'c1' });
    const put = await rawRequest(
      cp.url,
      'PUT',
      `/worker/v1/jobs/${j.id}/attempts/1/outputs/9/${j.id}/a.png`,
      {
        headers: { authorization: `Bearer ${token}` },
        body: 'png-bytes',
      },
    );
    expect(put.status).toBe(200);
    back.agent.send({
      type: 'job_completed',
      jobId: j.id,
      attempt: 1,
      outputs: [put.json() as never],
    });
    await back.agent.next('ack');
    expect(await job(j.id)).toMatchObject({ status: 'completed', outputs: [{ filename: 'a.png' }] });
    // One set of outputs in the user's space: the losing attempt's file is gone.
    expect(readdirSync(outDir)).toEqual(['a.png']);
    await second.agent.next('cancel', (m) => m.jobId === j.id && m.attempt === 2);
    // The cancelled attempt's own report changes nothing.
    second.agent.send({ type: 'job_cancelled', jobId: j.id, attempt: 2 });
    await second.agent.next('ack');
    expect(await job(j.id)).toMatchObject({ status: 'completed', outputs: [{ filename: 'a.png' }] });
  });
});
