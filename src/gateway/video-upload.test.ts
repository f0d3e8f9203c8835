/**
 * Inputs for video work, over a real socket the way the ComfyUI frontend's LoadVideo upload sends
 * them (one `POST /upload/image` multipart form, field `image`, no chunking: frontend 1.45 has no
 * resumable upload): a clip lands in the input folder and in LoadVideo's list; a clip still on its
 * way is shown nowhere; one over UPLOAD_LIMIT gets a 413 naming the limit, also when its size is
 * not declared; a form that is not multipart gets 415.
 */
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  listen,
  startHarness,
  storedFiles,
  uploadEnv,
  type Harness,
} from '../../test/support/gateway-kit.js';
import { SEEK_CLIP as CLIP } from '../../test/support/video.js';

// 4 s of test pattern, 12 kB; see test/fixtures/video/README.md.

let h: Harness;
let base: string;
let basic: string;
let cookie: string;

beforeAll(async () => {
  h = await startHarness({ UPLOAD_LIMIT: '64kb' });
  basic = await h.addUser('user001');
  await uploadEnv(h);
  base = await listen(h);
  const r = await fetch(`${base}/user001/api/users`, { headers: { authorization: basic } });
  cookie = /cm_session=[^;]+/.exec(r.headers.get('set-cookie') ?? '')![0];
}, 60_000);

afterAll(async () => {
  await h.close();
});

const get = (path: string, headers: Record<string, string> = {}) =>
  fetch(`${base}/user001/${path}`, { headers: { cookie, ...headers } });

/** What LoadVideo's file combo offers this user (its object_info, as the frontend reads it). */
async function loadVideoChoices(): Promise<string[]> {
  const info = (await (await get('api/object_info/LoadVideo')).json()) as {
    LoadVideo: { input: { required: { file: unknown[] } } };
  };
  const spec = info.LoadVideo.input.required.file;
  return (Array.isArray(spec[0]) ? spec[0] : (spec[1] as { options: string[] }).options) as string[];
}

describe('video inputs', () => {
  it('takes a clip the way the frontend uploads it: listed for LoadVideo, served with ranges', async () => {
    const form = new FormData();
    form.append('image', new Blob([CLIP], { type: 'video/mp4' }), 'footage.mp4');
    form.append('type', 'input');
    const r = await fetch(`${base}/user001/api/upload/image`, {
      method: 'POST',
      headers: { cookie },
      body: form,
    });
    expect(r.status).toBe(200);
    expect(await r.json()).toEqual({ name: 'footage.mp4', subfolder: '', type: 'input' });
    expect(await loadVideoChoices()).toContain('footage.mp4');
    const part = await get('api/view?filename=footage.mp4&type=input', { range: 'bytes=0-99' });
    expect(part.status).toBe(206);
    expect(part.headers.get('content-type')).toBe('video/mp4');
    expect(Buffer.from(await part.arrayBuffer()).equals(CLIP.subarray(0, 100))).toBe(true);
    // A range past the end: 416 with the real size, as a player expects.
    const past = await get('api/view?filename=footage.mp4&type=input', {
      range: `bytes=${CLIP.length + 10}-`,
    });
    expect(past.status).toBe(416);
    expect(past.headers.get('content-range')).toBe(`bytes */${CLIP.length}`);
  });

  it('shows a clip nowhere while it is still arriving, and everywhere once it has', async () => {
    const boundary = 'CLIPBOUND';
    const head = Buffer.from(
      `--${boundary}\r\nContent-Disposition: form-data; name="image"; filename="arriving.mp4"\r\nContent-Type: video/mp4\r\n\r\n`,
    );
    const tail = Buffer.from(
      `\r\n--${boundary}\r\nContent-Disposition: form-data; name="type"\r\n\r\ninput\r\n--${boundary}--\r\n`,
    );
    const body = Buffer.concat([head, CLIP, tail]);
    const s = connect(Number(new URL(base).port), '127.0.0.1');
    let answer = '';
    s.on('data', (d: Buffer) => (answer += d.toString('latin1')));
    await new Promise<void>((resolve) => s.once('connect', () => resolve()));
    s.write(
      `POST /user001/api/upload/image HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: ${cookie}\r\n` +
        `Content-Type: multipart/form-data; boundary=${boundary}\r\nContent-Length: ${body.length}\r\n\r\n`,
    );
    const half = head.length + CLIP.length / 2;
    s.write(body.subarray(0, half));
    await new Promise((r) => setTimeout(r, 300));
    // Half of it is on the server: not in the input list, not in LoadVideo's choices, not viewable.
    expect((await (await get('api/internal/files/input')).json()) as string[]).not.toContain('arriving.mp4');
    expect(await loadVideoChoices()).not.toContain('arriving.mp4');
    expect((await get('api/view?filename=arriving.mp4&type=input')).status).toBe(404);
    s.write(body.subarray(half));
    for (let i = 0; i < 200 && !answer.includes('}'); i++) await new Promise((r) => setTimeout(r, 25));
    s.destroy();
    expect(answer).toMatch(/^HTTP\/1\.1 200/);
    expect(await loadVideoChoices()).toContain('arriving.mp4');
    const whole = await get('api/view?filename=arriving.mp4&type=input');
    expect(Buffer.from(await whole.arrayBuffer()).equals(CLIP)).toBe(true);
  });

  it('answers a clip over UPLOAD_LIMIT with 413 naming the limit, also when its size is not declared', async () => {
    const before = await storedFiles(h);
    const boundary = 'BIGBOUND';
    let sent = 0;
    const chunks = [
      Buffer.from(
        `--${boundary}\r\nContent-Disposition: form-data; name="image"; filename="long.mp4"\r\nContent-Type: video/mp4\r\n\r\n`,
      ),
      ...Array.from({ length: 20 }, () => Buffer.alloc(16 * 1024, 3)),
      Buffer.from(`\r\n--${boundary}--\r\n`),
    ];
    // A stream: sent chunked, so only the bytes themselves can tell the server it is too large.
    const stream = new ReadableStream<Uint8Array>({
      pull(c) {
        if (sent >= chunks.length) return c.close();
        c.enqueue(chunks[sent++]!);
      },
    });
    const r = await fetch(`${base}/user001/api/upload/image`, {
      method: 'POST',
      headers: { cookie, 'content-type': `multipart/form-data; boundary=${boundary}` },
      body: stream,
      duplex: 'half',
    } as RequestInit);
    expect(r.status).toBe(413);
    // What the ComfyUI frontend's toast shows: `413 - <statusText>`.
    expect(r.statusText).toBe('Payload Too Large (upload limit 64 KB)');
    const err = ((await r.json()) as { error: { code: string; message: string } }).error;
    expect(err.code).toBe('PAYLOAD_TOO_LARGE');
    expect(err.message).toContain('64 KB');
    expect(await storedFiles(h)).toEqual(before);
  });

  it('answers a body that is not a multipart form with 415', async () => {
    const r = await fetch(`${base}/user001/api/upload/image`, {
      method: 'POST',
      headers: { cookie, 'content-type': 'video/mp4' },
      body: CLIP,
    });
    expect(r.status).toBe(415);
    expect(((await r.json()) as { error: { code: string } }).error.code).toBe('UNSUPPORTED_MEDIA_TYPE');
  });
});
