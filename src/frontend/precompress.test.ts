/**
 * A mirrored frontend's text files are compressed once, when the version is stored, and served
 * as brotli or gzip to browsers that take them, with one ETag per coding, `Vary: Accept-Encoding`
 * and 304s, while ranges and clients without compression get the file as it is.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { brotliDecompressSync, gunzipSync } from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startHarness, type Harness } from '../../test/support/app-harness.js';

const TOKEN = 'frontend-precompress-worker-token-0123456789';
const WORKER = { authorization: `Bearer ${TOKEN}` };
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

const BUNDLE = Buffer.from(
  Array.from({ length: 3000 }, (_, i) => `export const value${i} = ${JSON.stringify(`v${i % 17}`)};\n`).join(
    '',
  ),
);
const SITE: Record<string, Buffer> = {
  'index.html': Buffer.from(
    `<!doctype html><title>ComfyUI</title>${'<meta name="x" content="y">'.repeat(40)}<script type="module" src="./assets/index-Aaaa1111.js"></script>`,
  ),
  'assets/index-Aaaa1111.js': BUNDLE,
  // Already compressed: stays as it is.
  'assets/logo-Bbbb2222.png': randomBytes(4096),
  'assets/tiny-Cccc3333.js': Buffer.from('export {}'),
};

describe('precompressed frontend files', () => {
  let h: Harness;
  let cacheDir: string;
  let alice: string;

  async function mirror(site: Record<string, Buffer> = SITE): Promise<void> {
    const files = Object.entries(site).map(([path, b]) => ({ path, size: b.length, sha256: sha(b) }));
    const offer = await h.app.inject({
      method: 'POST',
      url: '/worker/v1/frontend/offers',
      headers: WORKER,
      payload: { source: 'http', comfyuiVersion: '0.3.64', frontendVersion: '1.45.0', files },
    });
    const answer = offer.json() as { versionId: string; missing: string[] };
    const bySha = new Map(Object.values(site).map((b) => [sha(b), b]));
    for (const m of answer.missing) {
      const res = await h.app.inject({
        method: 'PUT',
        url: `/worker/v1/frontend/blobs/${m}`,
        headers: { ...WORKER, 'content-type': 'application/octet-stream' },
        payload: bySha.get(m)!,
      });
      expect(res.statusCode).toBe(200);
    }
    const done = await h.app.inject({
      method: 'POST',
      url: `/worker/v1/frontend/offers/${answer.versionId}/complete`,
      headers: WORKER,
      payload: {},
    });
    expect(done.statusCode).toBe(200);
    await h.services.frontendCache!.precompressed();
  }

  const get = (url: string, headers: Record<string, string> = {}) =>
    h.app.inject({ url, headers: { authorization: alice, ...headers } });

  beforeEach(async () => {
    cacheDir = await mkdtemp(join(tmpdir(), 'cm-frontend-precompress-'));
    h = await startHarness({
      WORKER_TOKENS: `gpu1:${TOKEN}`,
      FRONTEND_CACHE_DIR: cacheDir,
      FRONTEND_KEEP_VERSIONS: '1',
    });
    alice = await h.addUser('alice');
    await mirror();
  });
  afterEach(async () => {
    await h.close();
    await rm(cacheDir, { recursive: true, force: true });
  });

  it('sends brotli, else gzip, else the file as it is, and says it varies', async () => {
    const url = '/alice/assets/index-Aaaa1111.js';
    const br = await get(url, { 'accept-encoding': 'gzip, deflate, br, zstd' });
    expect(br.statusCode).toBe(200);
    expect(br.headers['content-encoding']).toBe('br');
    expect(br.headers.vary).toBe('Accept-Encoding');
    expect(Number(br.headers['content-length'])).toBe(br.rawPayload.length);
    expect(brotliDecompressSync(br.rawPayload).equals(BUNDLE)).toBe(true);
    expect(br.rawPayload.length).toBeLessThan(BUNDLE.length * 0.25);

    const gz = await get(url, { 'accept-encoding': 'gzip, deflate' });
    expect(gz.headers['content-encoding']).toBe('gzip');
    expect(gunzipSync(gz.rawPayload).equals(BUNDLE)).toBe(true);
    expect(br.rawPayload.length).toBeLessThan(gz.rawPayload.length);

    for (const plain of [undefined, 'identity', 'br;q=0, gzip;q=0']) {
      const res = await get(url, plain ? { 'accept-encoding': plain } : {});
      expect(res.headers['content-encoding'], plain).toBeUndefined();
      expect(res.headers.vary).toBe('Accept-Encoding');
      expect(res.rawPayload.equals(BUNDLE), plain).toBe(true);
    }

    // The page itself too, still revalidated on every load.
    const index = await get('/alice/', { 'accept-encoding': 'br' });
    expect(index.headers['content-encoding']).toBe('br');
    expect(index.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(index.headers['cache-control']).toBe('no-cache');
    expect(brotliDecompressSync(index.rawPayload).equals(SITE['index.html']!)).toBe(true);
  });

  it('gives each coding its own ETag and answers a reload with 304', async () => {
    const url = '/alice/assets/index-Aaaa1111.js';
    const tags = new Set<string>();
    for (const ae of ['br', 'gzip', 'identity']) {
      const first = await get(url, { 'accept-encoding': ae });
      const etag = first.headers.etag as string;
      expect(etag).toMatch(/^"[0-9a-f]+(-br|-gzip)?"$/);
      tags.add(etag);
      const again = await get(url, { 'accept-encoding': ae, 'if-none-match': etag });
      expect(again.statusCode, ae).toBe(304);
      expect(again.rawPayload.length).toBe(0);
      expect(again.headers.etag).toBe(etag);
      expect(again.headers.vary).toBe('Accept-Encoding');
    }
    expect(tags.size).toBe(3);
    // A cached gzip copy does not validate the brotli one: that is a different body.
    const gzTag = (await get(url, { 'accept-encoding': 'gzip' })).headers.etag as string;
    const cross = await get(url, { 'accept-encoding': 'br', 'if-none-match': gzTag });
    expect(cross.statusCode).toBe(200);
    expect(cross.headers['content-encoding']).toBe('br');
  });

  it('serves ranges of the file as it is, never of a compressed copy', async () => {
    const res = await get('/alice/assets/index-Aaaa1111.js', {
      'accept-encoding': 'br, gzip',
      range: 'bytes=10-19',
    });
    expect(res.statusCode).toBe(206);
    expect(res.headers['content-encoding']).toBeUndefined();
    expect(res.headers['content-range']).toBe(`bytes 10-19/${BUNDLE.length}`);
    expect(res.rawPayload.equals(BUNDLE.subarray(10, 20))).toBe(true);
    const past = await get('/alice/assets/index-Aaaa1111.js', { range: `bytes=${BUNDLE.length}-` });
    expect(past.statusCode).toBe(416);
    expect(past.json()).toMatchObject({ error: { code: 'RANGE_NOT_SATISFIABLE' } });
  });

  it("deletes the copies of a version no longer kept, and keeps the shared contents' ones", async () => {
    const bundle2 = Buffer.concat([BUNDLE, Buffer.from('export const next = 2;\n')]);
    const next: Record<string, Buffer> = { ...SITE, 'assets/index-Dddd4444.js': bundle2 };
    delete next['assets/index-Aaaa1111.js'];
    await mirror(next);
    const encoded = (await readdir(join(cacheDir, 'encoded'))).sort();
    const index = sha(SITE['index.html']!);
    expect(encoded).toEqual(
      [`${index}.br`, `${index}.gz`, `${sha(bundle2)}.br`, `${sha(bundle2)}.gz`].sort(),
    );
    const res = await get('/alice/assets/index-Dddd4444.js', { 'accept-encoding': 'br' });
    expect(brotliDecompressSync(res.rawPayload).equals(bundle2)).toBe(true);
  });

  it('leaves images and tiny files alone, and keeps the copies across a restart', async () => {
    for (const rel of ['assets/logo-Bbbb2222.png', 'assets/tiny-Cccc3333.js']) {
      const res = await get(`/alice/${rel}`, { 'accept-encoding': 'br, gzip' });
      expect(res.headers['content-encoding'], rel).toBeUndefined();
      expect(res.rawPayload.equals(SITE[rel]!), rel).toBe(true);
    }
    const encoded = (await readdir(join(cacheDir, 'encoded'))).sort();
    expect(encoded).toEqual(
      [
        `${sha(BUNDLE)}.br`,
        `${sha(BUNDLE)}.gz`,
        `${sha(SITE['index.html']!)}.br`,
        `${sha(SITE['index.html']!)}.gz`,
      ].sort(),
    );

    await h.close();
    h = await startHarness({ WORKER_TOKENS: `gpu1:${TOKEN}`, FRONTEND_CACHE_DIR: cacheDir });
    alice = await h.addUser('alice');
    // Known at once from the disk: nothing is compressed again.
    const res = await get('/alice/assets/index-Aaaa1111.js', { 'accept-encoding': 'br' });
    expect(res.headers['content-encoding']).toBe('br');
    expect(brotliDecompressSync(res.rawPayload).equals(BUNDLE)).toBe(true);
  });
});

describe('precompressed FRONTEND_DIR files', () => {
  it('compresses the folder once in the background, and never serves a copy of a file changed since', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cm-frontend-dir-'));
    const cacheDir = join(dir, 'cache');
    const site = join(dir, 'site');
    await mkdir(join(site, 'assets'), { recursive: true });
    await writeFile(join(site, 'index.html'), SITE['index.html']!);
    await writeFile(join(site, 'assets', 'index-Aaaa1111.js'), BUNDLE);
    const h = await startHarness({ FRONTEND_DIR: site, FRONTEND_CACHE_DIR: cacheDir });
    try {
      const alice = await h.addUser('alice');
      const get = (url: string) =>
        h.app.inject({ url, headers: { authorization: alice, 'accept-encoding': 'br, gzip' } });
      const deadline = Date.now() + 20_000;
      let res = await get('/alice/assets/index-Aaaa1111.js');
      while (res.headers['content-encoding'] !== 'br' && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 100));
        res = await get('/alice/assets/index-Aaaa1111.js');
      }
      expect(res.headers['content-encoding']).toBe('br');
      expect(brotliDecompressSync(res.rawPayload).equals(BUNDLE)).toBe(true);
      const etag = res.headers.etag as string;
      expect(etag).toMatch(/-br"$/);

      // Someone edits the folder under the running server: the old copy must not be sent.
      const edited = Buffer.concat([BUNDLE, Buffer.from('export const edited = 1;\n')]);
      await writeFile(join(site, 'assets', 'index-Aaaa1111.js'), edited);
      const after = await get('/alice/assets/index-Aaaa1111.js');
      expect(after.headers['content-encoding']).toBeUndefined();
      expect(after.rawPayload.equals(edited)).toBe(true);
      expect(after.headers.etag).not.toBe(etag);
    } finally {
      await h.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
