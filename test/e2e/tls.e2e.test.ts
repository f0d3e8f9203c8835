/**
 * HTTPS in the real server process, with certificates made here by a private test CA (openssl):
 * HTTPS /health with HSTS, a login that sets a Secure cookie, WSS /<user>/ws, the plain-HTTP
 * redirect listener, certificate reload on SIGHUP (new connections see the new certificate, an
 * open WebSocket stays open; a bad reload keeps the old one), and every startup error as one
 * sentence with exit code 1 and no stack trace.
 */
import {
  chmodSync,
  chownSync,
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type WebSocket from 'ws';
import { TestCa, type IssuedCert } from '../support/certs.js';
import { nextMessage, openSocket, pingPong, runToEnd, send } from '../support/https-client.js';
import { Processes, waitFor, type Proc } from '../support/processes.js';
import { freePort } from '../support/redis-server.js';
import { addUser, startServe } from '../support/serve.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const ADMIN_PASSWORD = 'e2e-admin-password';
const USER_PASSWORD = 'e2e-user001-password';
/** Root ignores file permissions; the permission cases then run the server as `nobody`. */
const AS_ROOT = process.getuid?.() === 0;
const NOBODY = 65534;
/** Ports below this need CAP_NET_BIND_SERVICE (1024 unless the machine lowered it). */
const PRIVILEGED_PORTS_BELOW = (() => {
  try {
    return Number(readFileSync('/proc/sys/net/ipv4/ip_unprivileged_port_start', 'utf8'));
  } catch {
    return 1024;
  }
})();

const procs = new Processes();
let dir: string;
let ca: TestCa;
let first: IssuedCert;
let second: IssuedCert;
let liveCert: string;
let liveKey: string;
let port: number;
let redirectPort: number;
let base: string;
let server: Proc;
let env: Record<string, string>;
const sockets: WebSocket[] = [];

const log = () => server.log.join('');
const https = (path: string, opts: Parameters<typeof send>[1] = {}) =>
  send(`${base}${path}`, { ca: ca.caPem, ...opts });

async function login(user: string, password: string): Promise<string> {
  const res = await https('/login', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ user, password }),
  });
  expect(res.status).toBe(200);
  return String(res.headers['set-cookie']);
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cm-e2e-tls-'));
  // `nobody` must reach the certificates; the private keys stay 0600 (openssl writes them so).
  if (AS_ROOT) chmodSync(dir, 0o755);
  ca = new TestCa(join(dir, 'ca'));
  first = ca.issue('first', { keyType: 'ec' });
  second = ca.issue('second', { keyType: 'rsa' });
  // Where certbot would keep them: replaced in place on renewal, then SIGHUP.
  mkdirSync(join(dir, 'live'));
  liveCert = join(dir, 'live', 'fullchain.pem');
  liveKey = join(dir, 'live', 'privkey.pem');
  copyFileSync(first.fullchain, liveCert);
  copyFileSync(first.key, liveKey);

  [port, redirectPort] = await Promise.all([freePort(), freePort()]);
  base = `https://127.0.0.1:${port}`;
  env = {
    DATA_DIR: join(dir, 'data'),
    HOST: '127.0.0.1',
    PORT: String(port),
    LOG_LEVEL: 'info',
    ADMIN_PASSWORD,
    TLS_CERT: liveCert,
    TLS_KEY: liveKey,
    HTTP_REDIRECT_PORT: String(redirectPort),
    HSTS_MAX_AGE: '1234',
  };
  server = await startServe(procs, env, {
    ready: async () => (await https('/health')).status === 200,
    timeoutMs: 60_000,
    what: 'the HTTPS control plane',
  });
  await addUser(procs, env, 'user001', USER_PASSWORD);
}, 120_000);

afterEach((ctx) => {
  if (ctx.task.result?.state === 'fail') console.error(procs.logs());
});

afterAll(async () => {
  for (const ws of sockets) ws.terminate();
  for (const p of procs.all) await procs.stop(p);
  rmSync(dir, { recursive: true, force: true });
});

describe('HTTPS in the server', () => {
  it('answers /health over HTTPS with HSTS, presenting the configured certificate', async () => {
    const res = await https('/health');
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body.toString())).toMatchObject({ status: 'ok' });
    expect(res.headers['strict-transport-security']).toBe('max-age=1234');
    expect(res.serial).toBe(first.serial);
  });

  it('sets a Secure session cookie on login; WSS /user001/ws and the dashboard socket work', async () => {
    const cookie = await login('user001', USER_PASSWORD);
    expect(cookie).toMatch(/^cm_session=[^;]+;.*Secure/);
    const session = /^(cm_session=[^;]+)/.exec(cookie)![1]!;
    const ws = await openSocket(`wss://127.0.0.1:${port}/user001/ws?clientId=e2e-tls`, {
      ca: ca.caPem,
      headers: { cookie: session },
    });
    sockets.push(ws);
    const msg = await nextMessage(ws);
    expect(msg.type).toBe('status');

    // The dashboard's live socket over WSS too (its page builds wss:// from location.protocol).
    const admin = /^(cm_session=[^;]+)/.exec(await login('admin', ADMIN_PASSWORD))![1]!;
    const live = await openSocket(`wss://127.0.0.1:${port}/admin/api/live`, {
      ca: ca.caPem,
      headers: { cookie: admin },
    });
    sockets.push(live);
    expect(live.readyState).toBe(live.OPEN);
  });

  it('redirects plain HTTP to the same path and query over https, and answers /health there', async () => {
    const path = '/user001/api/userdata/workflows%2Fmy.json?overwrite=true';
    const res = await send(`http://127.0.0.1:${redirectPort}${path}`);
    expect(res.status).toBe(301);
    expect(res.headers.location).toBe(`https://127.0.0.1:${port}${path}`);
    const post = await send(`http://127.0.0.1:${redirectPort}/login`, { method: 'POST', body: '{}' });
    expect(post.status).toBe(308);
    const health = await send(`http://127.0.0.1:${redirectPort}/health`);
    expect(health.status).toBe(200);
    expect(health.headers['strict-transport-security']).toBeUndefined();
  });

  it('reloads the certificate on SIGHUP: new connections see it, an open WebSocket stays open', async () => {
    const session = /^(cm_session=[^;]+)/.exec(await login('user001', USER_PASSWORD))![1]!;
    const ws = await openSocket(`wss://127.0.0.1:${port}/user001/ws?clientId=e2e-reload`, {
      ca: ca.caPem,
      headers: { cookie: session },
    });
    sockets.push(ws);
    await nextMessage(ws);

    copyFileSync(second.fullchain, liveCert);
    copyFileSync(second.key, liveKey);
    process.kill(server.child.pid!, 'SIGHUP');
    await waitFor(() => log().includes('TLS certificate reloaded'), 15_000, 'the reload');

    expect((await https('/health')).serial).toBe(second.serial);
    await pingPong(ws);
    expect(ws.readyState).toBe(ws.OPEN);

    // A renewal that went wrong: the old (second) certificate stays, the log says why.
    writeFileSync(liveCert, 'not a certificate\n');
    process.kill(server.child.pid!, 'SIGHUP');
    await waitFor(() => log().includes('TLS certificate reload failed'), 15_000, 'the failed reload');
    expect(log()).toMatch(/"reason":"TLS_CERT file [^"]+ is not a PEM certificate/);
    expect((await https('/health')).serial).toBe(second.serial);
    await pingPong(ws);
    copyFileSync(second.fullchain, liveCert);
  });
});

// Each case starts a real process; generous per-test time for a loaded 2-core machine.
describe('startup errors: one sentence, exit code 1, no stack trace', { timeout: 90_000 }, () => {
  /** Starts `serve` with `extra` over a fresh data folder and expects it to fail. */
  async function failing(extra: Record<string, string>, as?: number) {
    const data = mkdtempSync(join(dir, 'fail-'));
    if (as !== undefined) chownSync(data, as, as);
    const r = await runToEnd(process.execPath, ['--import', 'tsx', 'src/cli/index.ts', 'serve'], {
      cwd: ROOT,
      env: { ...env, DATA_DIR: data, PORT: String(await freePort()), HTTP_REDIRECT_PORT: '', ...extra },
      ...(as !== undefined ? { uid: as } : {}),
    });
    const lines = r.stderr.trim().split('\n');
    expect(r.code, r.stdout + r.stderr).toBe(1);
    expect(lines, r.stderr).toHaveLength(1);
    expect(r.stderr).not.toMatch(/^\s+at /m);
    return lines[0]!;
  }

  it('a missing certificate file', async () => {
    expect(await failing({ TLS_CERT: join(dir, 'missing.pem') })).toBe(
      `error: TLS_CERT file ${join(dir, 'missing.pem')} does not exist.`,
    );
  });

  it('a file that is not PEM', async () => {
    const junk = join(dir, 'junk.pem');
    writeFileSync(junk, 'junk\n');
    expect(await failing({ TLS_CERT: junk })).toMatch(/^error: TLS_CERT file .* is not a PEM certificate/);
  });

  it('a key that does not match the certificate', async () => {
    expect(await failing({ TLS_CERT: first.fullchain, TLS_KEY: second.key })).toMatch(
      /^error: TLS_KEY .* does not belong to the certificate in TLS_CERT/,
    );
  });

  it('an expired certificate', async () => {
    const old = ca.issue('expired', { start: '20200101000000Z', end: '20200201000000Z' });
    expect(await failing({ TLS_CERT: old.fullchain, TLS_KEY: old.key })).toMatch(
      /^error: The certificate in TLS_CERT .* expired on 2020-02-01T00:00:00\.000Z: renew it/,
    );
  });

  const inUse = () =>
    `error: PORT ${port} on 127.0.0.1 is already in use (another comfy-multi or web server?): stop that program or set PORT to a free port.`;

  it('a port in use, with TLS', async () => {
    expect(await failing({ PORT: String(port) })).toBe(inUse());
  });

  it('a port in use, plain HTTP', async () => {
    expect(await failing({ PORT: String(port), TLS_CERT: '', TLS_KEY: '' })).toBe(inUse());
  });

  it('a redirect port in use', async () => {
    expect(await failing({ HTTP_REDIRECT_PORT: String(redirectPort) })).toMatch(
      new RegExp(`^error: HTTP_REDIRECT_PORT ${redirectPort} on 127\\.0\\.0\\.1 is already in use`),
    );
  });

  it.runIf(PRIVILEGED_PORTS_BELOW > 1000)('a port below 1024 without the right to bind it', async () => {
    const line = await failing({ PORT: '1000', TLS_CERT: '', TLS_KEY: '' }, AS_ROOT ? NOBODY : undefined);
    expect(line).toBe(
      'error: Listening on 127.0.0.1:1000 (PORT) is not permitted for this user: ports below 1024 need root or CAP_NET_BIND_SERVICE (see "HTTPS" in docs/admin-guide.md), or use a port above 1023.',
    );
  });

  it('a private key the service user cannot read', async () => {
    const key = join(dir, 'root-only.key');
    copyFileSync(first.key, key);
    chmodSync(key, 0o600);
    if (!AS_ROOT) chmodSync(key, 0o000);
    const line = await failing({ TLS_CERT: first.fullchain, TLS_KEY: key }, AS_ROOT ? NOBODY : undefined);
    expect(line).toMatch(
      /^error: TLS_KEY file .* cannot be read by user \S+ \(permission denied\): give that user read access/,
    );
  });

  it('a data folder the service user cannot write', async () => {
    const data = join(dir, 'locked-data');
    mkdirSync(data, { mode: 0o700 });
    if (!AS_ROOT) chmodSync(data, 0o500);
    const line = await failing({ DATA_DIR: data, TLS_CERT: '', TLS_KEY: '' }, AS_ROOT ? NOBODY : undefined);
    expect(line).toMatch(/^error: DATA_DIR .*locked-data is not readable and writable by user \S+/);
  });

  it('an invalid configuration exits 2 naming the field', async () => {
    const r = await runToEnd(process.execPath, ['--import', 'tsx', 'src/cli/index.ts', 'serve'], {
      cwd: ROOT,
      env: { ...env, TLS_KEY: '' },
    });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('TLS_KEY: set both TLS_CERT and TLS_KEY, or neither');
    expect(r.stderr).not.toMatch(/^\s+at /m);
  });
});
