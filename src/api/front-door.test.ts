/**
 * One front door, one set of rules: `POST /api/v1/jobs` refuses exactly the prompts a participant's
 * `/<user>/api/prompt` refuses, with the same body, and every state-changing `/api/v1` call is in
 * the activity log like the dashboard's actions.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { modelFreePrompt } from '../../test/support/prompts.js';
import type { AuditEntry } from '../admin/view-types.js';
import { startHarness, uploadEnv, type Harness } from '../../test/support/gateway-kit.js';

let h: Harness;
let admin: string;
let alice: string;

beforeEach(async () => {
  h = await startHarness();
  admin = await h.addUser('teacher', 'instructor');
  alice = await h.addUser('user001');
});
afterEach(() => h.close());

const send = (method: 'POST' | 'PUT' | 'PATCH' | 'DELETE', url: string, body?: unknown, auth = admin) =>
  h.app.inject({
    method,
    url,
    headers: { authorization: auth, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { payload: JSON.stringify(body) }),
  });

/** Both doors' answers to one prompt. */
async function bothDoors(prompt: unknown) {
  const gateway = await send('POST', '/user001/api/prompt', { prompt }, alice);
  const api = await send('POST', '/api/v1/jobs', { user: 'user001', prompt });
  return { gateway, api };
}

/** The v1 body is ComfyUI's body with this API's error code added. */
function withoutCode(body: { error: Record<string, unknown> }) {
  const { code, ...error } = body.error;
  expect(code).toBe('INVALID_PROMPT');
  return { ...body, error };
}

async function auditEntries(): Promise<AuditEntry[]> {
  return (await h.services.audit.recent(200)).reverse();
}

describe('POST /api/v1/jobs validates prompts exactly like /<user>/api/prompt', () => {
  it('refuses a prompt with no output node with the same error body, and queues nothing', async () => {
    await uploadEnv(h);
    const noOutput = {
      '1': { class_type: 'EmptyImage', inputs: { width: 8, height: 8, batch_size: 1, color: 0 } },
    };
    const { gateway, api } = await bothDoors(noOutput);
    expect(gateway.statusCode).toBe(400);
    expect(gateway.json().error.type).toBe('prompt_no_outputs');
    expect(api.statusCode).toBe(gateway.statusCode);
    expect(api.headers['content-type']).toBe(gateway.headers['content-type']);
    expect(withoutCode(api.json())).toEqual(gateway.json());
    expect((await h.services.store.countByStatus()).pending).toBe(0);
  });

  it('refuses a node input ComfyUI would refuse, with the same node_errors', async () => {
    await uploadEnv(h);
    const bad = modelFreePrompt();
    (bad['1']!.inputs as Record<string, unknown>).width = 0;
    const { gateway, api } = await bothDoors(bad);
    expect(gateway.json().node_errors['1'].errors[0].type).toBe('value_smaller_than_min');
    expect(api.statusCode).toBe(400);
    expect(withoutCode(api.json())).toEqual(gateway.json());
  });

  it('with no worker environment yet, refuses malformed prompts by shape, the same way', async () => {
    for (const prompt of [{}, { '1': { inputs: {} } }, 'text', [1]]) {
      const { gateway, api } = await bothDoors(prompt);
      expect(gateway.statusCode).toBe(400);
      expect(api.statusCode).toBe(400);
      expect(withoutCode(api.json())).toEqual(gateway.json());
    }
  });

  it('queues a valid prompt as the converted prompt, with the outputs to execute', async () => {
    await uploadEnv(h);
    const res = await send('POST', '/api/v1/jobs', { user: 'user001', prompt: modelFreePrompt() });
    expect(res.statusCode).toBe(201);
    const job = await h.services.store.getJob(res.json().id);
    expect(job?.metadata.outputs_to_execute).toEqual(['3']);
  });
});

describe('every state-changing /api/v1 call is in the activity log', () => {
  it('submit, refused submit, priority, front, cancel, queue settings, drain, frontend', async () => {
    await uploadEnv(h);
    const ok = await send('POST', '/api/v1/jobs', { user: 'user001', prompt: modelFreePrompt() });
    const id: string = ok.json().id;
    await send('POST', '/api/v1/jobs', { user: 'user001', prompt: {} });
    await send('POST', '/api/v1/jobs', { user: 'nobody', prompt: modelFreePrompt() });
    expect((await send('PATCH', `/api/v1/jobs/${id}`, { priority: 'high', front: true })).statusCode).toBe(
      200,
    );
    expect((await send('DELETE', `/api/v1/jobs/${id}`)).statusCode).toBe(200);
    expect((await send('DELETE', `/api/v1/jobs/${id}`)).statusCode).toBe(409);
    const queue = await send('PUT', '/api/v1/queue', {
      mode: 'priority',
      paused: true,
      limits: { maxRunningPerUser: 2 },
    });
    expect(queue.statusCode).toBe(200);
    expect((await send('POST', '/api/v1/workers/ghost/drain', { draining: true })).statusCode).toBe(404);
    await send('PUT', '/api/v1/frontend/current', { versionId: '0123456789abcdef' });

    const log = (await auditEntries()).map((e) => ({
      action: e.action,
      by: e.by,
      ok: e.ok,
      error: e.error,
      target: e.target,
      via: e.details.via,
    }));
    const by = 'teacher';
    const via = 'api';
    expect(log).toEqual([
      { action: 'job.submit', by, ok: true, error: undefined, target: null, via },
      { action: 'job.submit', by, ok: false, error: 'INVALID_PROMPT', target: null, via },
      { action: 'job.submit', by, ok: false, error: 'USER_NOT_FOUND', target: null, via },
      { action: 'job.priority', by, ok: true, error: undefined, target: id, via },
      { action: 'job.front', by, ok: true, error: undefined, target: id, via },
      { action: 'job.cancel', by, ok: true, error: undefined, target: id, via },
      { action: 'job.cancel', by, ok: false, error: 'JOB_FINISHED', target: id, via },
      { action: 'queue.mode', by, ok: true, error: undefined, target: null, via },
      { action: 'queue.pause', by, ok: true, error: undefined, target: null, via },
      { action: 'queue.limits', by, ok: true, error: undefined, target: null, via },
      { action: 'worker.drain', by, ok: false, error: 'WORKER_NOT_FOUND', target: 'ghost', via },
      { action: 'frontend.use', by, ok: false, error: expect.any(String), target: '0123456789abcdef', via },
    ]);
    const entries = await auditEntries();
    expect(entries[0]!.details).toMatchObject({ user: 'user001', number: ok.json().number });
    expect(entries[3]!.details).toMatchObject({ from: 'normal', to: 'high', user: 'user001' });
    expect(entries[7]!.details).toMatchObject({ from: 'round_robin', to: 'priority' });
  });

  it('reads are not logged', async () => {
    await send('POST', '/api/v1/jobs', { user: 'user001', prompt: modelFreePrompt() });
    const before = (await auditEntries()).length;
    for (const url of ['/api/v1/jobs', '/api/v1/queue', '/api/v1/workers', '/api/v1/frontend'])
      expect((await h.app.inject({ url, headers: { authorization: admin } })).statusCode).toBe(200);
    expect(await auditEntries()).toHaveLength(before);
  });
});
