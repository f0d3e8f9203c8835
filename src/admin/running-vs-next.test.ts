/**
 * "Running" counts only what ComfyUI executes. A job sent ahead to a GPU (assigned, or waiting in
 * ComfyUI's own queue) is `running` in the store but shows as next: in the dashboard's tiles and
 * participants table, and in the participant's own queue panel (`/queue`, `/api/jobs`).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { modelFreePrompt } from '../../test/support/prompts.js';
import {
  API_TOKEN,
  TestAgent,
  startControlPlane,
  until,
  type ControlPlane,
} from '../../test/support/worker-hub-kit.js';
import type { LiveSections } from './view-types.js';

let cp: ControlPlane;
let agent: TestAgent;
let alice: string;

beforeEach(async () => {
  cp = await startControlPlane();
  const { password } = await cp.services.accounts.create('user001', 'participant');
  alice = `Basic ${Buffer.from(`user001:${password}`).toString('base64')}`;
  ({ agent } = await TestAgent.register(cp.wsUrl, await cp.token('gpu'), { prefetch: 1 }));
});
afterEach(async () => {
  await agent.close();
  await cp.close();
});

async function state(): Promise<LiveSections> {
  const res = await cp.app.inject({
    url: '/admin/api/state',
    headers: { authorization: `Bearer ${API_TOKEN}` },
  });
  expect(res.statusCode).toBe(200);
  return res.json().sections as LiveSections;
}

const participant = (url: string) => cp.app.inject({ url, headers: { authorization: alice } });

describe('running vs next', () => {
  it('a job sent ahead is next, not running, until ComfyUI starts it', async () => {
    const first = await cp.services.queue.enqueue({ user: 'user001', prompt: modelFreePrompt() });
    const second = await cp.services.queue.enqueue({ user: 'user001', prompt: modelFreePrompt() });
    const third = await cp.services.queue.enqueue({ user: 'user001', prompt: modelFreePrompt() });
    const a1 = await agent.next('assign');
    const a2 = await agent.next('assign');
    expect([a1.job.jobId, a2.job.jobId]).toEqual([first.id, second.id]);
    expect((await cp.store.countByStatus('user001')).running).toBe(2);

    // Neither has started in ComfyUI: both are next, nothing runs.
    let s = await state();
    expect(s.queue.counts.running).toBe(0);
    expect(s.queue.next).toBe(2);
    expect(s.queue.counts.pending).toBe(1);
    expect(s.participants.find((p) => p.user === 'user001')).toMatchObject({
      running: 0,
      next: 2,
      pending: 1,
    });
    let q = (await participant('/user001/api/queue')).json();
    expect(q.queue_running).toEqual([]);
    expect(q.queue_pending.map((t: unknown[]) => t[1])).toEqual([first.id, second.id, third.id]);
    let jobs = (await participant('/user001/api/jobs?status=in_progress')).json();
    expect(jobs.jobs).toEqual([]);
    jobs = (await participant('/user001/api/jobs?status=pending&sort_order=asc')).json();
    expect(jobs.jobs.map((j: { id: string }) => j.id)).toEqual([first.id, second.id, third.id]);

    // ComfyUI starts the first: it runs, the second is still next.
    agent.send({ type: 'job_started', jobId: first.id, attempt: 1 });
    await until(async () => (await state()).queue.counts.running === 1, 3000, 'first running');
    s = await state();
    expect(s.queue.next).toBe(1);
    expect(s.participants.find((p) => p.user === 'user001')).toMatchObject({ running: 1, next: 1 });
    q = (await participant('/user001/api/queue')).json();
    expect(q.queue_running.map((t: unknown[]) => t[1])).toEqual([first.id]);
    expect(q.queue_pending.map((t: unknown[]) => t[1])).toEqual([second.id, third.id]);
    const detail = (await participant(`/user001/api/jobs/${second.id}`)).json();
    expect(detail.status).toBe('pending');
    expect((await participant(`/user001/api/jobs/${first.id}`)).json().status).toBe('in_progress');
  });
});
