/**
 * Three control-plane processes on one Redis (STORE=redis, real RedisClusterBus each), started
 * together on an empty store: a session, a CSRF token and a login throttle made on one process hold
 * on every other, as behind a load balancer without sticky sessions.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { CSRF_HEADER } from '../admin/csrf.js';
import { startClusterKit, type ClusterKit } from '../../test/support/cluster-kit.js';
import { SessionSigner } from '../auth/sessions.js';
import { SignInTokens } from '../auth/sign-in-tokens.js';
import { openRedisStore } from '../store/redis/redis-store.js';
import { MemoryClusterHub } from './cluster-bus.js';

const redisUrl = inject('redisUrl');
const TEACHER_PW = 'teacher-password-0123456789';

describe('auth across processes (STORE=redis)', () => {
  let kit: ClusterKit;

  beforeAll(async () => {
    kit = await startClusterKit({ redisUrl, count: 3 });
    await kit.processes[0]!.services.accounts.create('teacher', 'instructor', TEACHER_PW);
    await kit.processes[0]!.services.accounts.create('bob', 'participant', 'bob-password-0123456789');
  });
  afterAll(async () => {
    await kit?.close();
  });

  it('a session and CSRF token from one process work on every other, even when they started together', async () => {
    const [a, b, c] = kit.processes as [
      (typeof kit.processes)[0],
      (typeof kit.processes)[0],
      (typeof kit.processes)[0],
    ];
    const res = await a.app.inject({
      method: 'POST',
      url: '/login',
      payload: { user: 'teacher', password: TEACHER_PW },
    });
    expect(res.statusCode).toBe(200);
    const cookie = res.cookies.find((k) => k.name === 'cm_session')!.value;
    const me = await b.app.inject({ url: '/admin/api/me', cookies: { cm_session: cookie } });
    expect(me.statusCode).toBe(200);
    const csrf = me.json().csrfToken as string;
    const paused = await c.app.inject({
      method: 'POST',
      url: '/admin/api/queue/pause',
      cookies: { cm_session: cookie },
      headers: { [CSRF_HEADER]: csrf },
      payload: { paused: true },
    });
    expect(paused.statusCode).toBe(200);
    await c.app.inject({
      method: 'POST',
      url: '/admin/api/queue/pause',
      cookies: { cm_session: cookie },
      headers: { [CSRF_HEADER]: csrf },
      payload: { paused: false },
    });
  });

  it('a sign-in link issued through one process signs in on another, and its session works on a third', async () => {
    const [a, b, c] = kit.processes as [
      (typeof kit.processes)[0],
      (typeof kit.processes)[0],
      (typeof kit.processes)[0],
    ];
    await a.services.accounts.create('carol', 'participant', 'carol-password-0123456789');
    const carol = (await a.services.accounts.get('carol'))!;
    const { token } = await new SignInTokens(a.services.store).issue(carol);
    const res = await b.app.inject({ url: `/login/t/${token}` });
    expect(res.statusCode).toBe(303);
    const cookie = res.cookies.find((k) => k.name === 'cm_session')!.value;
    const me = await c.app.inject({ url: '/carol/api/queue', cookies: { cm_session: cookie } });
    expect(me.statusCode).toBe(200);
    // Logged out on c: refused on a too.
    await c.app.inject({ method: 'POST', url: '/logout', cookies: { cm_session: cookie } });
    expect(
      (await a.app.inject({ url: '/carol/api/queue', cookies: { cm_session: cookie } })).statusCode,
    ).toBe(401);
  });

  it('throttles a password-guessing storm spread over the processes as if it hit one', async () => {
    // LOGIN_MAX_FAILURES (default 5) wrong passwords for one pair, round robin over 3 processes.
    const max = kit.processes[0]!.config.LOGIN_MAX_FAILURES;
    for (let i = 0; i < max; i++) {
      const r = await kit.processes[i % 3]!.app.inject({
        url: '/api/v1/queue',
        headers: { authorization: kit.basic('bob', `wrong-${i}`) },
      });
      expect(r.statusCode).toBe(401);
    }
    for (const p of kit.processes) {
      const r = await p.app.inject({
        url: '/api/v1/queue',
        headers: { authorization: kit.basic('bob', 'bob-password-0123456789') },
      });
      expect(r.statusCode).toBe(429);
      expect(Number(r.headers['retry-after'])).toBeGreaterThan(0);
    }
  });
});

describe('shared secrets', () => {
  it('processes opening the session key at the same moment on an empty store agree on one key', async () => {
    const keyPrefix = `test:secret:${process.pid}:${Math.random().toString(36).slice(2)}:`;
    const defaults = {
      mode: 'fifo' as const,
      paused: false,
      limits: { maxPendingPerUser: 1, maxRunningPerUser: 1 },
      userLimits: {},
    };
    const stores = await Promise.all(
      [0, 1, 2, 3].map((i) =>
        openRedisStore({ url: redisUrl, keyPrefix, defaults, name: `test-secret-${i}` }),
      ),
    );
    try {
      const hub = new MemoryClusterHub();
      const signers = await Promise.all(stores.map((s) => SessionSigner.open(s, hub.join())));
      const claims = { u: 'bob', v: 1, e: 4_000_000_000, s: 'abcdefghijklmnopqrstuv', c: 1 };
      for (const from of signers) {
        const token = from.sign(claims);
        for (const to of signers) expect(to.verify(token, 1)).toEqual(claims);
      }
    } finally {
      await Promise.all(stores.map((s) => s.close()));
    }
  });
});
