import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHarness, type Harness } from '../../test/support/app-harness.js';

describe('ComfyUI frontend under /<user>/', () => {
  let dir: string;
  let h: Harness;
  let alice: string;
  let bob: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cm-frontend-'));
    await mkdir(join(dir, 'assets'));
    await writeFile(
      join(dir, 'index.html'),
      '<!doctype html><title>ComfyUI</title><script src="./assets/index-Abc12345.js"></script>',
    );
    await writeFile(join(dir, 'assets', 'index-Abc12345.js'), 'console.log("comfy")');
    await writeFile(join(dir, 'user.css'), 'body{}');
    await writeFile(join(dir, '100%.js'), 'percent');
    await writeFile(join(dir, 'assets', 'favicon.ico'), 'ICO');
    h = await startHarness({ FRONTEND_DIR: dir });
    alice = await h.addUser('alice');
    bob = await h.addUser('bob');
  });
  afterAll(async () => {
    await h.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("serves the frontend's index page to its owner, uncached", async () => {
    const res = await h.app.inject({ url: '/alice/', headers: { authorization: alice } });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/html/);
    expect(res.headers['cache-control']).toBe('no-cache');
    expect(res.body).toContain('<title>ComfyUI</title>');
  });

  it('serves hashed bundles with long caching and other files without', async () => {
    const js = await h.app.inject({
      url: '/alice/assets/index-Abc12345.js',
      headers: { authorization: alice },
    });
    expect(js.statusCode).toBe(200);
    expect(js.headers['content-type']).toMatch(/javascript/);
    expect(js.headers['cache-control']).toContain('immutable');
    expect(js.body).toBe('console.log("comfy")');
    const css = await h.app.inject({ url: '/alice/user.css', headers: { authorization: alice } });
    expect(css.headers['cache-control']).toBe('no-cache');
    expect(css.body).toBe('body{}');
  });

  it("keeps the API routes ahead of the frontend's files", async () => {
    const res = await h.app.inject({ url: '/alice/api/queue', headers: { authorization: alice } });
    expect(res.json()).toEqual({ queue_running: [], queue_pending: [] });
  });

  it('refuses another participant, and sends a browser without a session to the login page', async () => {
    expect((await h.app.inject({ url: '/alice/', headers: { authorization: bob } })).statusCode).toBe(403);
    const anon = await h.app.inject({ url: '/alice/', headers: { accept: 'text/html' } });
    expect(anon.statusCode).toBe(303);
    expect(anon.headers.location).toBe('/login?next=%2Falice%2F');
  });

  it('serves the favicon and other root-relative frontend assets at the site root without a login', async () => {
    const ico = await h.app.inject('/assets/favicon.ico');
    expect(ico.statusCode).toBe(200);
    expect(ico.body).toBe('ICO');
    expect((await h.app.inject('/favicon.ico')).body).toBe('ICO');
    expect((await h.app.inject('/assets/../index.html')).statusCode).toBeGreaterThanOrEqual(400);
  });

  it("reads a JSON body sent form-encoded, as ComfyUI's own API examples send it", async () => {
    const res = await h.app.inject({
      method: 'POST',
      url: '/alice/api/settings/Comfy.TutorialCompleted',
      headers: { authorization: alice, 'content-type': 'application/x-www-form-urlencoded' },
      payload: 'true',
    });
    expect(res.statusCode).toBe(200);
    const got = await h.app.inject({
      url: '/alice/api/settings/Comfy.TutorialCompleted',
      headers: { authorization: alice },
    });
    expect(got.json()).toBe(true);
  });

  it('answers the built-in template library empty instead of 404', async () => {
    const index = await h.app.inject({
      url: '/alice/templates/index.json',
      headers: { authorization: alice },
    });
    expect(index.json()).toEqual([]);
    const fuse = await h.app.inject({
      url: '/alice/templates/fuse_options.json',
      headers: { authorization: alice },
    });
    expect(fuse.json()).toEqual({});
  });

  it('never serves a file outside the frontend folder', async () => {
    for (const url of [
      '/alice/..%2f..%2fetc%2fpasswd',
      '/alice/%2e%2e/%2e%2e/etc/passwd',
      '/alice/assets/..%5c..%5cindex.html',
    ]) {
      const res = await h.app.inject({ url, headers: { authorization: alice } });
      expect(res.statusCode, url).toBeGreaterThanOrEqual(400);
      expect(res.statusCode, url).toBeLessThan(500);
      expect(res.body).not.toContain('root:');
    }
    const missing = await h.app.inject({ url: '/alice/nothing.js', headers: { authorization: alice } });
    expect(missing.statusCode).toBe(404);
    // The router has decoded the path already: a literal % is a file name character, not an error.
    const percent = await h.app.inject({ url: '/alice/100%25.js', headers: { authorization: alice } });
    expect(percent.statusCode).toBe(200);
    expect(percent.body).toBe('percent');
  });
});

describe('without a frontend', () => {
  it('tells participants ComfyUI will appear once a worker has connected, and reloads itself', async () => {
    const h = await startHarness();
    try {
      const alice = await h.addUser('alice');
      const res = await h.app.inject({ url: '/alice/', headers: { authorization: alice } });
      expect(res.statusCode).toBe(503);
      expect(res.headers['cache-control']).toBe('no-store');
      expect(res.body).toContain('first GPU worker has connected');
      expect(res.body).toContain('http-equiv="refresh"');
      const asset = await h.app.inject({
        url: '/alice/assets/index-Abc12345.js',
        headers: { authorization: alice },
      });
      expect(asset.statusCode).toBe(404);
      expect(asset.json().error.code).toBe('NOT_FOUND');
    } finally {
      await h.close();
    }
  });

  it("answers the frontend's user.css with an empty stylesheet when there is none", async () => {
    const h = await startHarness();
    try {
      const alice = await h.addUser('alice');
      const res = await h.app.inject({ url: '/alice/user.css', headers: { authorization: alice } });
      expect(res.statusCode).toBe(200);
      expect(res.headers['content-type']).toMatch(/^text\/css/);
      expect(res.body).toBe('');
    } finally {
      await h.close();
    }
  });

  it('says the frontend is not configured when mirroring is off', async () => {
    const h = await startHarness({ FRONTEND_MIRROR: 'false' });
    try {
      const alice = await h.addUser('alice');
      const res = await h.app.inject({ url: '/alice/', headers: { authorization: alice } });
      expect(res.statusCode).toBe(503);
      expect(res.body).toContain('not configured');
      expect(res.body).not.toContain('http-equiv="refresh"');
    } finally {
      await h.close();
    }
  });
});
