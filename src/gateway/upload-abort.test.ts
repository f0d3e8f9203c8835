/**
 * Uploads that never finish, against a listening server over raw sockets (inject cannot abort a
 * request half-way): a client that sends the start of a file part and then stops, half-closes or
 * resets the connection must never crash the process nor leave a file behind.
 */
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listen, startHarness, storedFiles, tinyPng, type Harness } from '../../test/support/gateway-kit.js';

let h: Harness;
let port: number;
let basic: string;
let cookie: string;
let uploadedBefore: string[];

beforeAll(async () => {
  h = await startHarness({ LOG_LEVEL: 'silent' });
  basic = await h.addUser('user001');
  const base = await listen(h);
  port = Number(new URL(base).port);
  // A session cookie makes authentication fast, so the abort lands while the file is being
  // stored (Basic's bcrypt check would let it land before the handler runs).
  const r = await fetch(`${base}/user001/api/users`, { headers: { authorization: basic } });
  cookie = /cm_session=[^;]+/.exec(r.headers.get('set-cookie') ?? '')![0];
  uploadedBefore = await storedFiles(h);
}, 60_000);

afterAll(async () => {
  await h.close();
});

type Ending = 'destroy' | 'end' | 'reset';

/** Sends request headers and the start of a multipart form, then ends the connection. */
async function truncatedUpload(opts: {
  path: string;
  auth: 'cookie' | 'basic';
  body: string | Buffer;
  ending: Ending;
  delayMs: number;
}): Promise<void> {
  const s: Socket = connect(port, '127.0.0.1');
  s.on('error', () => {});
  s.resume(); // read (and drop) whatever the server answers, so its closing is seen
  await new Promise<void>((resolve) => s.once('connect', () => resolve()));
  const authHeader = opts.auth === 'cookie' ? `Cookie: ${cookie}` : `Authorization: ${basic}`;
  s.write(
    `POST ${opts.path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n${authHeader}\r\n` +
      `Content-Type: multipart/form-data; boundary=BOUND\r\nContent-Length: 1000000\r\n\r\n`,
  );
  s.write(opts.body);
  if (opts.delayMs) await new Promise((r) => setTimeout(r, opts.delayMs));
  if (opts.ending === 'end') s.end();
  else if (opts.ending === 'reset') s.resetAndDestroy();
  else s.destroy();
  await new Promise<void>((resolve) => (s.closed ? resolve() : s.once('close', () => resolve())));
}

const fileHead = (name: string) =>
  `--BOUND\r\nContent-Disposition: form-data; name="image"; filename="${name}"\r\nContent-Type: image/png\r\n\r\n`;
const field = (name: string, value: string) =>
  `--BOUND\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`;

/** Waits until the server has cleaned up (a staged upload is removed once the abort is seen). */
async function settledFiles(): Promise<string[]> {
  let files = await storedFiles(h);
  for (let i = 0; i < 100 && files.join() !== uploadedBefore.join(); i++) {
    await new Promise((r) => setTimeout(r, 50));
    files = await storedFiles(h);
  }
  return files;
}

describe('aborted uploads', () => {
  it('survive every way a file part can be cut off, and leave no file behind', async () => {
    const bodies: (string | Buffer)[] = [
      fileHead('a.png'),
      Buffer.concat([Buffer.from(fileHead('b.png')), tinyPng()]),
      Buffer.concat([Buffer.from(field('type', 'input') + fileHead('c.png')), tinyPng(3)]),
      // The file part complete, the form not: the staged file must go, too.
      Buffer.concat([Buffer.from(fileHead('d.png')), tinyPng(4), Buffer.from('\r\n' + field('type', 'in'))]),
      Buffer.concat([Buffer.from(fileHead('e.png')), Buffer.alloc(200_000, 7)]),
    ];
    const paths = [
      '/user001/upload/image',
      '/user001/api/upload/image',
      '/user001/upload/mask',
      '/user001/api/upload/mask',
    ];
    const cases: Promise<void>[] = [];
    let n = 0;
    for (const body of bodies)
      for (const path of paths)
        for (const ending of ['destroy', 'end', 'reset'] as const) {
          const auth = n % 5 === 4 ? 'basic' : 'cookie';
          // Several at once, as the attacker did: 2–3 were enough to crash the process.
          cases.push(truncatedUpload({ path, auth, body, ending, delayMs: (n++ * 7) % 40 }));
        }
    await Promise.all(cases);

    const health = await fetch(`http://127.0.0.1:${port}/health`);
    expect(health.status).toBe(200);
    expect(await settledFiles()).toEqual(uploadedBefore);
    // The server still takes a normal upload afterwards.
    const form = new FormData();
    form.append('image', new Blob([tinyPng(9)], { type: 'image/png' }), 'ok.png');
    const ok = await fetch(`http://127.0.0.1:${port}/user001/api/upload/image`, {
      method: 'POST',
      headers: { cookie },
      body: form,
    });
    expect(ok.status).toBe(200);
  }, 60_000);

  it('a streamed userdata body over USERDATA_LIMIT gets its 413 over the wire (not a reset)', async () => {
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent >= 22) return controller.close();
        sent++;
        controller.enqueue(new Uint8Array(1024 * 1024).fill(0x20));
      },
    });
    const r = await fetch(`http://127.0.0.1:${port}/user001/api/userdata/huge.json`, {
      method: 'POST',
      headers: { cookie, 'content-type': 'application/json' },
      body,
      duplex: 'half',
    } as RequestInit);
    expect(r.status).toBe(413);
    expect(((await r.json()) as { error: { code: string } }).error.code).toBe('PAYLOAD_TOO_LARGE');
    expect((await storedFiles(h)).filter((f) => f.includes('userdata'))).toEqual([]);
  }, 60_000);
});
