/**
 * Raising one participant: every job of theirs — waiting now and queued later — takes their level
 * instead of the default; the action is audited (dashboard and /api/v1 alike).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { modelFreePrompt } from '../../test/support/prompts.js';
import { startHarness, type Harness } from '../../test/support/app-harness.js';

const TOKEN = 'ci-secret-api-token-123';
let h: Harness;

beforeEach(async () => {
  h = await startHarness({ API_TOKENS: `ci:${TOKEN}` });
  for (const u of ['ann', 'ben', 'cat']) await h.addUser(u);
  await h.services.queue.updateSettings({ mode: 'priority' });
});
afterEach(() => h.close());

const bearer = { authorization: `Bearer ${TOKEN}` };
const enqueue = (user: string, priority?: 'instructor' | 'high' | 'normal' | 'low') =>
  h.services.queue.enqueue({ user, prompt: modelFreePrompt(), ...(priority ? { priority } : {}) });
const raise = (user: string, priority: string | null) =>
  h.app.inject({
    method: 'POST',
    url: `/admin/api/users/${user}/priority`,
    headers: bearer,
    payload: { priority },
  });
const order = async () => (await h.services.store.pendingInOrder(50)).map((j) => `${j.user}:${j.priority}`);

describe('raise one participant', () => {
  it('applies to their waiting jobs and to jobs they queue later, and is audited', async () => {
    await enqueue('ann');
    await enqueue('ben');
    await enqueue('ben', 'low'); // set explicitly: keeps its level
    await enqueue('cat');
    expect(await order()).toEqual(['ann:normal', 'ben:normal', 'cat:normal', 'ben:low']);

    const r = await raise('ben', 'high');
    expect(r.statusCode).toBe(200);
    expect(r.json()).toEqual({ user: 'ben', priority: 'high', jobsChanged: 1 });
    expect(await order()).toEqual(['ben:high', 'ann:normal', 'cat:normal', 'ben:low']);

    // Later jobs take the level too; another participant's do not.
    const later = await enqueue('ben');
    expect(later.priority).toBe('high');
    expect((await enqueue('cat')).priority).toBe('normal');
    expect((await order())[1]).toBe('ben:high');

    const state = await h.app.inject({ url: '/admin/api/state', headers: bearer });
    const rows = state.json().sections.participants as { user: string; priority: string | null }[];
    expect(rows.find((p) => p.user === 'ben')?.priority).toBe('high');
    expect(rows.find((p) => p.user === 'ann')?.priority).toBeNull();

    // Back to normal: the raised jobs return to normal, the explicit low one stays low.
    expect((await raise('ben', null)).json()).toMatchObject({ priority: null, jobsChanged: 2 });
    expect((await enqueue('ben')).priority).toBe('normal');
    expect((await order()).filter((x) => x.startsWith('ben:'))).toEqual([
      'ben:normal',
      'ben:normal',
      'ben:normal',
      'ben:low',
    ]);

    const log = (await h.services.audit.recent(10)).filter((e) => e.action === 'user.priority').reverse();
    expect(
      log.map((e) => [e.by, e.target, e.ok, e.details.from, e.details.to, e.details.jobsChanged]),
    ).toEqual([
      ['token:ci', 'ben', true, null, 'high', 1],
      ['token:ci', 'ben', true, 'high', null, 2],
    ]);
  });

  it('refuses unknown users and bad levels with a clear 4xx, audited when it got that far', async () => {
    const unknown = await raise('nobody', 'high');
    expect(unknown.statusCode).toBe(404);
    expect(unknown.json().error.code).toBe('USER_NOT_FOUND');
    for (const bad of ['instructor', 'urgent', 3]) {
      const r = await raise('ben', bad as string);
      expect(r.statusCode).toBe(400);
      expect(r.json().error.code).toBe('VALIDATION_FAILED');
    }
    const log = await h.services.audit.recent(10);
    expect(log.map((e) => [e.action, e.target, e.ok, e.error])).toEqual([
      ['user.priority', 'nobody', false, 'USER_NOT_FOUND'],
    ]);
  });

  it('is also PUT /api/v1/users/:user/priority, audited as an API call', async () => {
    await enqueue('ann');
    const r = await h.app.inject({
      method: 'PUT',
      url: '/api/v1/users/ann/priority',
      headers: bearer,
      payload: { priority: 'high' },
    });
    expect(r.json()).toEqual({ user: 'ann', priority: 'high', jobsChanged: 1 });
    expect((await enqueue('ann')).priority).toBe('high');
    const [entry] = await h.services.audit.recent(1);
    expect(entry).toMatchObject({
      action: 'user.priority',
      target: 'ann',
      ok: true,
      details: { via: 'api' },
    });
  });
});
