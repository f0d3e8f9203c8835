import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHarness, type Harness } from '../../test/support/app-harness.js';
import { RouteMethods } from './method-not-allowed.js';

describe('RouteMethods', () => {
  it('matches parameters as one segment, ignores wildcards, query strings and a trailing slash', () => {
    const t = new RouteMethods();
    t.add('GET', '/:user/api/jobs/:id');
    t.add(['POST'], '/:user/api/jobs/:id/cancel');
    t.add('GET', '/:user/*');
    t.add('GET', '/favicon.ico');
    expect(t.allowed('/alice/api/jobs/x?y=1')).toEqual(['GET']);
    expect(t.allowed('/alice/api/jobs/x/')).toEqual(['GET']);
    expect(t.allowed('/alice/api/jobs/x/cancel')).toEqual(['POST']);
    expect(t.allowed('/alice/api/jobs/a/b')).toEqual([]);
    expect(t.allowed('/alice/anything')).toEqual([]);
    expect(t.allowed('/faviconXico')).toEqual([]);
  });
});

describe('405 METHOD_NOT_ALLOWED', () => {
  let h: Harness;
  let admin: string;
  beforeAll(async () => {
    h = await startHarness();
    admin = await h.addUser('teacher', 'instructor');
  });
  afterAll(async () => {
    await h.close();
  });

  it('answers a known path with a wrong method with 405 and Allow', async () => {
    const r = await h.app.inject({
      method: 'DELETE',
      url: '/api/v1/queue',
      headers: { authorization: admin },
    });
    expect(r.statusCode).toBe(405);
    expect(r.json()).toMatchObject({ error: { code: 'METHOD_NOT_ALLOWED' } });
    expect(r.headers.allow).toBe('GET, HEAD, PUT');
    const health = await h.app.inject({ method: 'POST', url: '/health' });
    expect(health.statusCode).toBe(405);
    expect(health.headers.allow).toBe('GET, HEAD');
  });

  it('still answers 404 for paths no route has', async () => {
    expect((await h.app.inject({ method: 'POST', url: '/api/v1/nope' })).statusCode).toBe(404);
    expect((await h.app.inject({ method: 'DELETE', url: '/nope/deeper/still' })).statusCode).toBe(404);
  });
});
