import { brotliDecompressSync, gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHarness, uploadEnv, type Harness } from '../../test/support/gateway-kit.js';

describe("the gateway's JSON answers, compressed for clients that take it", () => {
  let h: Harness;
  let alice: string;
  beforeAll(async () => {
    h = await startHarness();
    alice = await h.addUser('alice');
    await uploadEnv(h);
  });
  afterAll(async () => h.close());

  const get = (url: string, ae?: string) =>
    h.app.inject({ url, headers: { authorization: alice, ...(ae ? { 'accept-encoding': ae } : {}) } });

  it('sends object_info as brotli or gzip, the same JSON once decoded', async () => {
    const plain = await get('/alice/api/object_info');
    expect(plain.statusCode).toBe(200);
    expect(plain.headers['content-encoding']).toBeUndefined();
    expect(plain.headers.vary).toBe('Accept-Encoding');
    expect(plain.rawPayload.length).toBeGreaterThan(100_000);

    const br = await get('/alice/api/object_info', 'gzip, deflate, br, zstd');
    expect(br.headers['content-encoding']).toBe('br');
    expect(br.headers['content-type']).toMatch(/^application\/json/);
    expect(Number(br.headers['content-length'])).toBe(br.rawPayload.length);
    expect(br.rawPayload.length).toBeLessThan(plain.rawPayload.length / 5);
    expect(brotliDecompressSync(br.rawPayload).equals(plain.rawPayload)).toBe(true);

    const gz = await get('/alice/api/object_info', 'gzip, deflate');
    expect(gz.headers['content-encoding']).toBe('gzip');
    expect(gunzipSync(gz.rawPayload).equals(plain.rawPayload)).toBe(true);
  });

  it('leaves small answers and HEAD alone', async () => {
    const small = await get('/alice/api/queue', 'br, gzip');
    expect(small.statusCode).toBe(200);
    expect(small.headers['content-encoding']).toBeUndefined();
    expect(small.json()).toEqual({ queue_running: [], queue_pending: [] });
    const head = await h.app.inject({
      method: 'HEAD',
      url: '/alice/api/object_info',
      headers: { authorization: alice, 'accept-encoding': 'br' },
    });
    expect(head.headers['content-encoding']).toBeUndefined();
  });

  it("sends the workshop extension compressed, and a 304 when the browser's copy is current", async () => {
    const url = '/alice/extensions/comfy-multi/workshop.js';
    const plain = await get(url);
    const br = await get(url, 'br');
    expect(br.headers['content-encoding']).toBe('br');
    expect(brotliDecompressSync(br.rawPayload).equals(plain.rawPayload)).toBe(true);
    const etag = br.headers.etag as string;
    expect(etag).toMatch(/^W\/"/);
    const again = await h.app.inject({
      url,
      headers: { authorization: alice, 'accept-encoding': 'br', 'if-none-match': etag },
    });
    expect(again.statusCode).toBe(304);
    expect(again.rawPayload.length).toBe(0);
  });
});
