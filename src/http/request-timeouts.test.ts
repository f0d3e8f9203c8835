/**
 * Slowloris defence (issue 10): a request body that stops arriving gets its connection closed
 * after BODY_IDLE_TIMEOUT_MS (before, one stayed open for 330 s and more), while a slow but
 * steady upload finishes. Raw sockets against a listening server.
 */
import { readdir } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listen, startHarness, tinyPng, type Harness } from '../../test/support/gateway-kit.js';

const IDLE_MS = 1000;
let h: Harness;
let port: number;
let auth: string;

beforeAll(async () => {
  h = await startHarness({ BODY_IDLE_TIMEOUT_MS: String(IDLE_MS) });
  auth = await h.addUser('user001');
  port = Number(new URL(await listen(h)).port);
}, 60_000);

afterAll(async () => {
  await h.close();
});

async function rawConnect(): Promise<{ s: Socket; closed: Promise<string> }> {
  const s = connect(port, '127.0.0.1');
  s.on('error', () => {});
  let answer = '';
  s.on('data', (d: Buffer) => (answer += d.toString('latin1')));
  const closed = new Promise<string>((resolve) => s.once('close', () => resolve(answer)));
  await new Promise<void>((resolve) => s.once('connect', () => resolve()));
  return { s, closed };
}

/** Resolves 'timeout' unless `p` settles within `ms` (the test's own bound, generous). */
const within = <T>(p: Promise<T>, ms: number) =>
  Promise.race([p, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), ms).unref())]);

async function inputFiles(): Promise<string[]> {
  const dir = join(h.dataDir, 'files', 'user001');
  return (await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []))
    .filter((e) => e.isFile())
    .map((e) => e.name);
}

describe('request bodies that stop arriving', () => {
  it('a JSON body that stalls gets its connection closed', async () => {
    const { s, closed } = await rawConnect();
    s.write(
      `POST /user001/api/userdata/stall.json HTTP/1.1\r\nHost: x\r\nAuthorization: ${auth}\r\n` +
        `Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"a": `,
    );
    expect(await within(closed, 10 * IDLE_MS)).not.toBe('timeout');
    s.destroy();
  });

  it('an upload that stalls mid-file gets its connection closed and leaves no file', async () => {
    const { s, closed } = await rawConnect();
    s.write(
      `POST /user001/api/upload/image HTTP/1.1\r\nHost: x\r\nAuthorization: ${auth}\r\n` +
        `Content-Type: multipart/form-data; boundary=B\r\nContent-Length: 100000\r\n\r\n` +
        `--B\r\nContent-Disposition: form-data; name="image"; filename="stall.png"\r\n\r\n`,
    );
    s.write(tinyPng());
    expect(await within(closed, 10 * IDLE_MS)).not.toBe('timeout');
    s.destroy();
    for (let i = 0; i < 50 && (await inputFiles()).length > 0; i++)
      await new Promise((r) => setTimeout(r, 50));
    expect(await inputFiles()).toEqual([]);
  });

  it('a slow but steady upload (a chunk every 100 ms for 3 s) finishes', async () => {
    const { s, closed } = await rawConnect();
    const head = Buffer.from(
      `--B\r\nContent-Disposition: form-data; name="image"; filename="slow.png"\r\nContent-Type: image/png\r\n\r\n`,
    );
    const chunks = Array.from({ length: 30 }, (_, i) => Buffer.alloc(1000, i));
    const tail = Buffer.from('\r\n--B--\r\n');
    const length = head.length + chunks.length * 1000 + tail.length;
    s.write(
      `POST /user001/api/upload/image HTTP/1.1\r\nHost: x\r\nAuthorization: ${auth}\r\nConnection: close\r\n` +
        `Content-Type: multipart/form-data; boundary=B\r\nContent-Length: ${length}\r\n\r\n`,
    );
    s.write(head);
    for (const c of chunks) {
      s.write(c);
      await new Promise((r) => setTimeout(r, 100));
    }
    s.write(tail);
    const answer = await closed;
    expect(answer).toMatch(/^HTTP\/1.1 200/);
    expect(answer).toContain('"name":"slow.png"');
  });

  it('requests without a body and idle keep-alive connections are not affected', async () => {
    const { s, closed } = await rawConnect();
    s.write(`GET /health HTTP/1.1\r\nHost: x\r\n\r\n`);
    // Longer than the body idle time: a keep-alive connection waits for its next request.
    await new Promise((r) => setTimeout(r, 2 * IDLE_MS + 200));
    expect(s.closed).toBe(false);
    s.end();
    expect(await closed).toMatch(/^HTTP\/1.1 200/);
  });
});

describe('bodies nobody reads', () => {
  it('a trickled body sent to a route that answered without reading it is still cut', async () => {
    const { s, closed } = await rawConnect();
    // No credentials: answered 401 at once, the multipart body never read by a handler.
    s.write(
      `POST /user001/api/upload/image HTTP/1.1\r\nHost: x\r\n` +
        `Content-Type: multipart/form-data; boundary=B\r\nContent-Length: 100000\r\n\r\n--B\r\n`,
    );
    const answer = await within(closed, 10 * IDLE_MS);
    expect(answer).not.toBe('timeout');
    expect(answer).toMatch(/^HTTP\/1.1 401/);
    s.destroy();
  });
});

describe('many bodies on one kept-alive connection (a worker uploading outputs)', () => {
  it('leave no listener behind on the connection', async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.name);
    process.on('warning', onWarning);
    try {
      let serverSocket: Socket | null = null;
      const onConnection = (s: Socket) => (serverSocket ??= s);
      h.app.server.on('connection', onConnection);
      const { s } = await rawConnect();
      h.app.server.off('connection', onConnection);
      const body = '{"a": 1}';
      for (let i = 0; i < 30; i++) {
        const answered = new Promise<void>((resolve) => {
          let seen = '';
          const on = (d: Buffer) => {
            seen += d.toString('latin1');
            if (/\r\n\r\n/.test(seen)) {
              s.off('data', on);
              resolve();
            }
          };
          s.on('data', on);
        });
        s.write(
          `POST /user001/api/userdata/k${i}.json?overwrite=true HTTP/1.1\r\nHost: x\r\nAuthorization: ${auth}\r\n` +
            `Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
        );
        await answered;
      }
      // Each body used to add a `close` listener to the connection that stayed until it closed.
      expect((serverSocket as Socket | null)?.listenerCount('close') ?? 0).toBeLessThan(10);
      expect(warnings).not.toContain('MaxListenersExceededWarning');
      s.destroy();
    } finally {
      process.off('warning', onWarning);
    }
  });
});
