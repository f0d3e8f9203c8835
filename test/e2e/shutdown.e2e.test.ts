/**
 * `comfy-multi serve` stops when told, as a real process: after SIGTERM it exits within
 * SHUTDOWN_GRACE_MS (plus a little) even while participants' browsers hold a large download they
 * stopped reading and WebSockets that never answer the close frame. Without the grace, the
 * process waited for those connections for ever.
 *
 * Needs no ComfyUI: it runs the same with and without `COMFYUI_URL`.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Processes, waitFor, type Proc } from '../support/processes.js';
import { freePort } from '../support/redis-server.js';
import { addUser, basicAuth, startServe } from '../support/serve.js';

const GRACE_MS = 1500;
/** Process exit, closing the store, a loaded CI machine. */
const SLACK_MS = 4000;
const USER_PASSWORD = 'e2e-user001-password';
const BIG = 'assets/big-0123abcd.png';

const procs = new Processes();
let dir: string;
let port: number;
let server: Proc;
const sockets: Socket[] = [];
const basic = basicAuth('user001', USER_PASSWORD);

/** A raw connection that sends `request` and then never reads a byte of the answer. */
async function stalledClient(request: string): Promise<Socket> {
  const s = connect(port, '127.0.0.1');
  sockets.push(s);
  s.on('error', () => undefined);
  await new Promise<void>((resolve) => s.once('connect', () => resolve()));
  s.pause();
  s.write(request);
  return s;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cm-e2e-shutdown-'));
  const frontend = join(dir, 'frontend');
  mkdirSync(join(frontend, 'assets'), { recursive: true });
  writeFileSync(join(frontend, 'index.html'), '<!doctype html><title>ComfyUI</title>');
  // Random bytes: far more than the socket buffers hold, whatever compression might do.
  writeFileSync(join(frontend, BIG), randomBytes(48 * 1024 * 1024));
  port = await freePort();
  const env = {
    DATA_DIR: join(dir, 'data'),
    HOST: '127.0.0.1',
    PORT: String(port),
    LOG_LEVEL: 'info',
    ADMIN_PASSWORD: 'e2e-admin-password',
    FRONTEND_DIR: frontend,
    SHUTDOWN_GRACE_MS: String(GRACE_MS),
  };
  server = await startServe(procs, env);
  await addUser(procs, env, 'user001', USER_PASSWORD);
}, 90_000);

afterEach((ctx) => {
  if (ctx.task.result?.state === 'fail') console.error(procs.logs());
});

afterAll(async () => {
  for (const s of sockets) s.destroy();
  await procs.killAll();
  rmSync(dir, { recursive: true, force: true });
});

describe('serve on SIGTERM', () => {
  it('exits within SHUTDOWN_GRACE_MS while clients hold unread downloads and silent WebSockets', async () => {
    const downloads = await Promise.all(
      [1, 2, 3].map(() =>
        stalledClient(
          `GET /user001/${BIG} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: ${basic}\r\nAccept-Encoding: identity\r\n\r\n`,
        ),
      ),
    );
    const ws = await Promise.all(
      [1, 2].map(() =>
        stalledClient(
          `GET /user001/ws?clientId=c1 HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: ${basic}\r\n` +
            `Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n` +
            `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\n\r\n`,
        ),
      ),
    );
    // The answers have started: the first bytes wait unread in each socket's buffer.
    await waitFor(() => [...downloads, ...ws].every((s) => s.readableLength > 0), 10_000, 'the answers');

    const t0 = Date.now();
    procs.kill(server, 'SIGTERM');
    const code = await Promise.race([
      server.exited,
      new Promise<'still running'>((r) => setTimeout(() => r('still running'), GRACE_MS + SLACK_MS)),
    ]);
    const elapsed = Date.now() - t0;
    expect(code, `${elapsed} ms after SIGTERM`).toBe(0);
    // The grace was given: the downloads were not cut the moment the signal came.
    expect(elapsed).toBeGreaterThanOrEqual(GRACE_MS - 100);
    expect(server.log.join('')).toContain('shutdown grace over');
  }, 30_000);
});
