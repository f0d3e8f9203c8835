import { createHash } from 'node:crypto';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startHarness, type Harness } from '../../test/support/app-harness.js';
import { offerOf as workerOffer } from '../../test/support/frontend-sites.js';
import type { FrontendOffer } from '../worker/protocol.js';

const TOKEN = 'frontend-mirror-worker-token-0123456789';
const WORKER = { authorization: `Bearer ${TOKEN}` };

const sha = (s: string | Buffer) => createHash('sha256').update(s).digest('hex');

/** A frontend as path → content. */
type Site = Record<string, string>;

const V1: Site = {
  'index.html':
    '<!doctype html><title>ComfyUI</title><script type="module" src="./assets/index-Aaaa1111.js"></script>',
  'assets/index-Aaaa1111.js': 'import("./Lazy-Bbbb2222.js")',
  'assets/Lazy-Bbbb2222.js': 'export const lazy = 1',
  'assets/favicon.ico': 'ICO',
  'scripts/app.js': 'export const app = window.comfyAPI.app.app',
  'extensions/VHS/js/videoinfo.js': 'import { app } from "../../../scripts/app.js"',
};

/** The next release: a new entry bundle and index, the rest unchanged. */
const V2: Site = {
  ...V1,
  'index.html':
    '<!doctype html><title>ComfyUI 2</title><script type="module" src="./assets/index-Cccc3333.js"></script>',
  'assets/index-Cccc3333.js': 'import("./Lazy-Bbbb2222.js") // v2',
};
delete V2['assets/index-Aaaa1111.js'];

const offerOf = (site: Site, version: string | null = '1.45.0'): FrontendOffer => workerOffer(site, version);

describe('frontend mirrored from a worker', () => {
  let h: Harness;
  let cacheDir: string;
  let alice: string;

  async function start(env: Record<string, string> = {}): Promise<Harness> {
    const harness = await startHarness({
      WORKER_TOKENS: `gpu1:${TOKEN}`,
      FRONTEND_CACHE_DIR: cacheDir,
      ...env,
    });
    alice = await harness.addUser('alice');
    return harness;
  }

  const offer = (o: unknown) =>
    h.app.inject({
      method: 'POST',
      url: '/worker/v1/frontend/offers',
      headers: WORKER,
      payload: o as object,
    });
  const put = (hash: string, body: string | Buffer) =>
    h.app.inject({
      method: 'PUT',
      url: `/worker/v1/frontend/blobs/${hash}`,
      headers: { ...WORKER, 'content-type': 'application/octet-stream' },
      payload: body,
    });
  const complete = (id: string) =>
    h.app.inject({
      method: 'POST',
      url: `/worker/v1/frontend/offers/${id}/complete`,
      headers: WORKER,
      payload: {},
    });
  const get = (url: string) => h.app.inject({ url, headers: { authorization: alice } });

  /** Offers a site, uploads what is asked for, completes; returns what was uploaded. */
  async function mirror(site: Site): Promise<{ versionId: string; uploaded: string[] }> {
    const answer = (await offer(offerOf(site))).json() as {
      versionId: string;
      status: string;
      missing: string[];
    };
    const bySha = new Map(Object.values(site).map((b) => [sha(b), b]));
    for (const m of answer.missing) expect((await put(m, bySha.get(m)!)).statusCode).toBe(200);
    if (answer.status === 'pending') expect((await complete(answer.versionId)).statusCode).toBe(200);
    return { versionId: answer.versionId, uploaded: answer.missing };
  }

  beforeEach(async () => {
    cacheDir = await mkdtemp(join(tmpdir(), 'cm-frontend-cache-'));
    h = await start();
  });
  afterEach(async () => {
    await h.close();
    await rm(cacheDir, { recursive: true, force: true });
  });

  it('asks for every content once, then serves the frontend to participants', async () => {
    const { uploaded } = await mirror(V1);
    expect(uploaded.sort()).toEqual([...new Set(Object.values(V1).map(sha))].sort());

    const index = await get('/alice/');
    expect(index.statusCode).toBe(200);
    expect(index.body).toBe(V1['index.html']);
    expect(index.headers['cache-control']).toBe('no-cache');
    const lazy = await get('/alice/assets/Lazy-Bbbb2222.js');
    expect(lazy.body).toBe(V1['assets/Lazy-Bbbb2222.js']);
    expect(lazy.headers['cache-control']).toContain('immutable');
    expect((await get('/alice/extensions/VHS/js/videoinfo.js')).body).toBe(
      V1['extensions/VHS/js/videoinfo.js'],
    );
    expect((await h.app.inject('/favicon.ico')).body).toBe('ICO');

    const status = h.services.frontend.status();
    expect(status).toMatchObject({ source: 'mirror', mirroring: true, cachedVersions: 1 });
    expect(status.version).toMatchObject({ label: 'frontend 1.45.0', files: 6, workerId: 'gpu1' });
  });

  it('answers "present" to a worker offering a frontend it already holds', async () => {
    const first = await mirror(V1);
    const again = (await offer(offerOf(V1))).json();
    expect(again).toEqual({ versionId: first.versionId, status: 'present', missing: [] });
  });

  it('serves the newest version: a worker still on an older one does not switch it back', async () => {
    const v1 = await mirror(V1);
    const v2 = await mirror(V2);
    expect((await offer(offerOf(V1))).json().status).toBe('present');
    expect((await get('/alice/')).body).toBe(V2['index.html']);
    expect(h.services.frontend.status().version?.id).toBe(v2.versionId);

    // An instructor can go back to a version held on disk.
    const admin = { authorization: await h.addUser('teacher', 'instructor') };
    const listed = await h.app.inject({ url: '/api/v1/frontend', headers: admin });
    expect(listed.statusCode).toBe(200);
    expect(listed.json().versions.map((v: { id: string; current: boolean }) => [v.id, v.current])).toEqual([
      [v2.versionId, true],
      [v1.versionId, false],
    ]);
    const use = await h.app.inject({
      method: 'PUT',
      url: '/api/v1/frontend/current',
      headers: admin,
      payload: { versionId: v1.versionId },
    });
    expect(use.statusCode).toBe(200);
    expect((await get('/alice/')).body).toBe(V1['index.html']);
    expect((await h.services.audit.recent(1))[0]).toMatchObject({
      by: 'teacher',
      action: 'frontend.use',
      target: v1.versionId,
      details: { label: 'frontend 1.45.0', previous: v2.versionId },
    });
    const unknown = await h.app.inject({
      method: 'PUT',
      url: '/api/v1/frontend/current',
      headers: admin,
      payload: { versionId: 'ffffffffffffffff' },
    });
    expect(unknown.statusCode).toBe(404);
    expect(
      (await h.app.inject({ url: '/api/v1/frontend', headers: { authorization: alice } })).statusCode,
    ).toBe(403);
  });

  it('asks only for changed contents of a new version, and still serves the old chunks', async () => {
    await mirror(V1);
    const { uploaded } = await mirror(V2);
    expect(uploaded.sort()).toEqual([sha(V2['index.html']!), sha(V2['assets/index-Cccc3333.js']!)].sort());
    expect((await get('/alice/')).body).toBe(V2['index.html']);
    // A browser that loaded V1 before V2 arrived still gets V1's entry bundle.
    expect((await get('/alice/assets/index-Aaaa1111.js')).body).toBe(V1['assets/index-Aaaa1111.js']);
    expect(h.services.frontend.status().cachedVersions).toBe(2);
  });

  it('keeps serving the mirrored frontend after a restart, with no worker online', async () => {
    await mirror(V1);
    await mirror(V2);
    await h.close();
    h = await start();
    expect((await get('/alice/')).body).toBe(V2['index.html']);
    expect((await get('/alice/assets/index-Aaaa1111.js')).statusCode).toBe(200);
  });

  it('deletes versions and contents beyond FRONTEND_KEEP_VERSIONS', async () => {
    await h.close();
    h = await start({ FRONTEND_KEEP_VERSIONS: '1' });
    await mirror(V1);
    await mirror(V2);
    expect((await get('/alice/assets/index-Aaaa1111.js')).statusCode).toBe(404);
    expect((await readdir(join(cacheDir, 'versions'))).length).toBe(1);
    const blobs = await readdir(join(cacheDir, 'blobs'));
    expect(blobs.sort()).toEqual([...new Set(Object.values(V2).map(sha))].sort());
  });

  it('keeps the files private to the server process', async () => {
    await mirror(V1);
    const blob = await stat(join(cacheDir, 'blobs', sha(V1['index.html']!)));
    expect(blob.mode & 0o077).toBe(0);
    expect((await stat(join(cacheDir, 'versions'))).mode & 0o077).toBe(0);
  });

  it('refuses content that does not match its hash, or that no offer names', async () => {
    const answer = (await offer(offerOf(V1))).json() as { versionId: string; missing: string[] };
    const target = sha(V1['index.html']!);
    const wrong = await put(target, '<script>alert(1)</script>');
    expect(wrong.statusCode).toBe(400);
    expect(wrong.json().error.code).toBe('HASH_MISMATCH');
    const longer = await put(target, `${V1['index.html']}<!-- more -->`);
    expect(longer.json().error.code).toBe('HASH_MISMATCH');
    expect(await readdir(join(cacheDir, 'blobs'))).toEqual([]);
    expect(await readdir(join(cacheDir, 'tmp'))).toEqual([]);

    const stray = await put(sha('not offered'), 'not offered');
    expect(stray.statusCode).toBe(409);
    expect(stray.json().error.code).toBe('CONFLICT');

    const early = await complete(answer.versionId);
    expect(early.statusCode).toBe(409);
    expect(early.json().error.code).toBe('FRONTEND_INCOMPLETE');
    expect(early.json().error.details.missing).toHaveLength(answer.missing.length);
    expect((await get('/alice/')).statusCode).toBe(503);

    const unknown = await complete('0123456789abcdef');
    expect(unknown.statusCode).toBe(404);
  });

  it('validates offers: safe relative paths, an index.html, each path once', async () => {
    const base = offerOf(V1);
    const file = (path: string) => ({ path, size: 1, sha256: sha('x') });
    for (const path of [
      '../etc/passwd',
      '/etc/passwd',
      'assets/../../x.js',
      'a\\b.js',
      '.env',
      'a//b.js',
      'a/\u0000.js',
    ]) {
      const res = await offer({ ...base, files: [...base.files, file(path)] });
      expect(res.statusCode, path).toBe(400);
      expect(res.json().error.code, path).toBe('VALIDATION_FAILED');
    }
    const noIndex = await offer({ ...base, files: base.files.filter((f) => f.path !== 'index.html') });
    expect(noIndex.statusCode).toBe(400);
    const twice = await offer({ ...base, files: [...base.files, base.files[0]] });
    expect(twice.statusCode).toBe(400);
    const badSha = await put('not-a-sha', 'x');
    expect(badSha.statusCode).toBe(400);
  });

  it('is for workers only', async () => {
    const anon = await h.app.inject({
      method: 'POST',
      url: '/worker/v1/frontend/offers',
      payload: offerOf(V1),
    });
    expect(anon.statusCode).toBe(401);
    const participant = await h.app.inject({
      method: 'POST',
      url: '/worker/v1/frontend/offers',
      headers: { authorization: alice },
      payload: offerOf(V1),
    });
    expect(participant.statusCode).toBe(401);
  });

  it('answers FRONTEND_NOT_WANTED when mirroring is off', async () => {
    await h.close();
    h = await start({ FRONTEND_MIRROR: 'false' });
    const res = await offer(offerOf(V1));
    expect(res.statusCode).toBe(409);
    expect(res.json().error.code).toBe('FRONTEND_NOT_WANTED');
    expect(h.services.frontend.wantsMirror()).toBe(false);
  });
});
