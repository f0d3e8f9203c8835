/**
 * Range requests and conditional GETs on every route that serves a file (`/view`, `/api/view`,
 * `/gallery/download`), with the local file store and with S3 (a real s3rver): through `inject`,
 * and as raw HTTP/1.1 bytes on a listening server, the way curl and browsers send them.
 */
import { randomUUID } from 'node:crypto';
import { connect } from 'node:net';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startS3Server, type S3ServerHandle } from '../../test/support/s3-server.js';
import { userFileKey } from '../files/safe-path.js';
import { listen, startHarness, type Harness } from '../../test/support/gateway-kit.js';
import { setProcessEnv } from '../../test/support/process-env.js';

const SIZE = 300_000;
const BODY = Buffer.from(Array.from({ length: SIZE }, (_, i) => (i * 31 + (i >> 9)) & 0xff));
const VIEW = '/user001/api/view?filename=clip.mp4&subfolder=job1&type=output';

let s3: S3ServerHandle;
let restoreEnv: (() => void) | undefined;

beforeAll(async () => {
  s3 = await startS3Server({ buckets: ['files'] });
  // The S3 file store takes its credentials from the standard AWS variables.
  restoreEnv = setProcessEnv(s3.env);
});

afterAll(async () => {
  restoreEnv?.();
  await s3?.stop();
});

/** One raw HTTP/1.1 exchange: the status line, headers and the exact body bytes that came back. */
async function raw(
  base: string,
  method: string,
  path: string,
  headers: Record<string, string>,
): Promise<{ status: number; headers: Record<string, string>; body: Buffer }> {
  const { hostname, port } = new URL(base);
  const lines = [`${method} ${path} HTTP/1.1`, `Host: ${hostname}:${port}`, 'Connection: close'];
  for (const [k, v] of Object.entries(headers)) lines.push(`${k}: ${v}`);
  const socket = connect(Number(port), hostname);
  socket.write(`${lines.join('\r\n')}\r\n\r\n`);
  const chunks: Buffer[] = [];
  for await (const c of socket) chunks.push(c as Buffer);
  const all = Buffer.concat(chunks);
  const end = all.indexOf('\r\n\r\n');
  const head = all.subarray(0, end).toString('latin1').split('\r\n');
  const out: Record<string, string> = {};
  for (const l of head.slice(1)) {
    const i = l.indexOf(':');
    out[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim();
  }
  return { status: Number(head[0]!.split(' ')[1]), headers: out, body: all.subarray(end + 4) };
}

describe.each(['local', 's3'] as const)('file ranges, %s file store', (backend) => {
  let h: Harness;
  let alice: string;
  let bob: string;

  beforeEach(async () => {
    h = await startHarness(
      backend === 's3'
        ? {
            FILES: 's3',
            S3_BUCKET: 'files',
            S3_PREFIX: `ranges-${randomUUID()}/`,
            S3_ENDPOINT: s3.endpoint,
            S3_REGION: 'us-east-1',
            S3_FORCE_PATH_STYLE: 'true',
          }
        : {},
    );
    alice = await h.addUser('user001');
    bob = await h.addUser('user002');
    await h.services.files.write(userFileKey('user001', 'output', 'job1', 'clip.mp4'), BODY);
    await h.services.files.write(userFileKey('user002', 'output', 'job2', 'secret.mp4'), BODY);
  });

  afterEach(async () => {
    await h.close();
  });

  const get = (url: string, headers: Record<string, string> = {}, method: 'GET' | 'HEAD' = 'GET') =>
    h.app.inject({ method, url, headers: { authorization: alice, ...headers } });

  it('answers a whole file with Accept-Ranges, a strong ETag and Last-Modified', async () => {
    const r = await get(VIEW);
    expect(r.statusCode).toBe(200);
    expect(r.headers['accept-ranges']).toBe('bytes');
    expect(r.headers['content-type']).toBe('video/mp4');
    expect(r.headers['content-length']).toBe(String(SIZE));
    expect(r.headers.etag).toMatch(/^"[0-9a-f]+-[0-9a-f]+"$/);
    expect(new Date(r.headers['last-modified']!).getTime()).toBeGreaterThan(0);
    expect(r.rawPayload.equals(BODY)).toBe(true);
  });

  it('serves a-b, a- and -n as 206 with Content-Range, on /view, /api/view and gallery downloads', async () => {
    const urls = [
      VIEW,
      '/user001/view?filename=clip.mp4&subfolder=job1&type=output',
      '/user001/gallery/download?path=job1/clip.mp4',
    ];
    for (const url of urls) {
      for (const [range, start, end] of [
        ['bytes=100-199', 100, 199],
        ['bytes=0-0', 0, 0],
        ['bytes=0-1', 0, 1],
        ['bytes=299000-', 299_000, SIZE - 1],
        ['bytes=-10', SIZE - 10, SIZE - 1],
        ['bytes=150000-999999999', 150_000, SIZE - 1],
      ] as const) {
        const r = await get(url, { range });
        expect(r.statusCode, `${url} ${range}`).toBe(206);
        expect(r.headers['content-range']).toBe(`bytes ${start}-${end}/${SIZE}`);
        expect(r.headers['content-length']).toBe(String(end - start + 1));
        expect(r.headers['accept-ranges']).toBe('bytes');
        expect(r.rawPayload.equals(BODY.subarray(start, end + 1)), `${url} ${range}`).toBe(true);
      }
    }
    const dl = await get(urls[2]!, { range: 'bytes=5-9' });
    expect(dl.headers['content-disposition']).toMatch(/^attachment; /);
  });

  it('416 with Content-Range bytes */size and the JSON error for a range past the end', async () => {
    for (const range of ['bytes=300000-', 'bytes=400000-500000', 'bytes=-0']) {
      const r = await get(VIEW, { range });
      expect(r.statusCode, range).toBe(416);
      expect(r.headers['content-range']).toBe(`bytes */${SIZE}`);
      expect(r.json()).toMatchObject({ error: { code: 'RANGE_NOT_SATISFIABLE' } });
    }
  });

  it('serves the whole file for several ranges and for ranges it ignores', async () => {
    for (const range of ['bytes=0-1,5-6', 'bytes=5-3', 'items=0-4', 'bytes=abc']) {
      const r = await get(VIEW, { range });
      expect(r.statusCode, range).toBe(200);
      expect(r.headers['content-range']).toBeUndefined();
      expect(r.rawPayload.length).toBe(SIZE);
    }
  });

  it('If-Range: a matching ETag or date keeps the range, a stale one gets the whole file', async () => {
    const first = await get(VIEW);
    const etag = first.headers.etag as string;
    const lastModified = first.headers['last-modified'] as string;
    expect((await get(VIEW, { range: 'bytes=0-9', 'if-range': etag })).statusCode).toBe(206);
    expect((await get(VIEW, { range: 'bytes=0-9', 'if-range': lastModified })).statusCode).toBe(206);
    const stale = await get(VIEW, { range: 'bytes=0-9', 'if-range': '"0-0"' });
    expect(stale.statusCode).toBe(200);
    expect(stale.rawPayload.length).toBe(SIZE);
    // The file is replaced: the old ETag no longer matches.
    await h.services.files.write(
      userFileKey('user001', 'output', 'job1', 'clip.mp4'),
      BODY.subarray(0, 1000),
    );
    const after = await get(VIEW, { range: 'bytes=0-9', 'if-range': etag });
    expect(after.statusCode).toBe(200);
    expect(after.rawPayload.length).toBe(1000);
  });

  it('If-None-Match and If-Modified-Since answer 304 without a body', async () => {
    const first = await get(VIEW);
    const etag = first.headers.etag as string;
    const r = await get(VIEW, { 'if-none-match': etag });
    expect(r.statusCode).toBe(304);
    expect(r.rawPayload.length).toBe(0);
    expect(r.headers.etag).toBe(etag);
    expect(
      (await get(VIEW, { 'if-modified-since': first.headers['last-modified'] as string })).statusCode,
    ).toBe(304);
    expect((await get(VIEW, { 'if-none-match': '"other"' })).statusCode).toBe(200);
  });

  it('HEAD answers the headers of GET (whole file or range) and no body', async () => {
    const whole = await get(VIEW, {}, 'HEAD');
    expect(whole.statusCode).toBe(200);
    expect(whole.headers['content-length']).toBe(String(SIZE));
    expect(whole.headers['accept-ranges']).toBe('bytes');
    expect(whole.rawPayload.length).toBe(0);
    const part = await get(VIEW, { range: 'bytes=10-19' }, 'HEAD');
    expect(part.statusCode).toBe(206);
    expect(part.headers['content-range']).toBe(`bytes 10-19/${SIZE}`);
    expect(part.headers['content-length']).toBe('10');
    expect(part.rawPayload.length).toBe(0);
  });

  it('a range to another participant’s file is refused exactly like a whole-file request', async () => {
    const urls = [
      '/user002/api/view?filename=secret.mp4&subfolder=job2&type=output',
      '/user001/api/view?filename=secret.mp4&subfolder=../user002/output/job2&type=output',
      '/user001/api/view?filename=secret.mp4&subfolder=job2&type=output',
      '/user002/gallery/download?path=job2/secret.mp4',
      '/user001/gallery/download?path=../../user002/output/job2/secret.mp4',
    ];
    for (const url of urls) {
      const plain = await get(url);
      const ranged = await get(url, { range: 'bytes=0-9', 'if-range': '"x"' });
      expect(plain.statusCode, url).toBeGreaterThanOrEqual(400);
      expect(ranged.statusCode, url).toBe(plain.statusCode);
      expect(ranged.body).toBe(plain.body);
      expect(ranged.headers['content-range']).toBeUndefined();
    }
    // The owner gets it.
    const own = await h.app.inject({
      method: 'GET',
      url: '/user002/api/view?filename=secret.mp4&subfolder=job2&type=output',
      headers: { authorization: bob, range: 'bytes=0-9' },
    });
    expect(own.statusCode).toBe(206);
  });

  it('the streamed zip of all outputs says it has no ranges and ignores them', async () => {
    const r = await get('/user001/gallery/download.zip', { range: 'bytes=0-9' });
    expect(r.statusCode).toBe(200);
    expect(r.headers['accept-ranges']).toBe('none');
    expect(r.headers['content-range']).toBeUndefined();
  });

  it('raw HTTP/1.1 on a listening server: 206, 416, HEAD and 304 byte for byte', async () => {
    const base = await listen(h);
    const auth = { Authorization: alice };
    const part = await raw(base, 'GET', VIEW, { ...auth, Range: 'bytes=299990-' });
    expect(part.status).toBe(206);
    expect(part.headers['content-range']).toBe(`bytes 299990-299999/${SIZE}`);
    expect(part.headers['content-length']).toBe('10');
    expect(part.body.equals(BODY.subarray(299_990))).toBe(true);

    const bad = await raw(base, 'GET', VIEW, { ...auth, Range: 'bytes=300000-' });
    expect(bad.status).toBe(416);
    expect(bad.headers['content-range']).toBe(`bytes */${SIZE}`);
    expect(JSON.parse(bad.body.toString())).toMatchObject({ error: { code: 'RANGE_NOT_SATISFIABLE' } });

    const head = await raw(base, 'HEAD', VIEW, auth);
    expect(head.status).toBe(200);
    expect(head.headers['content-length']).toBe(String(SIZE));
    expect(head.headers['accept-ranges']).toBe('bytes');
    expect(head.body.length).toBe(0);

    const again = await raw(base, 'GET', VIEW, { ...auth, 'If-None-Match': head.headers.etag! });
    expect(again.status).toBe(304);
    expect(again.body.length).toBe(0);

    const whole = await raw(base, 'GET', VIEW, auth);
    expect(whole.status).toBe(200);
    expect(whole.body.equals(BODY)).toBe(true);
  });
});
