/**
 * The printed nginx config in front of the real server: a real nginx (Debian's, installed by
 * .ci/run) runs in the foreground from a temp folder with the site `comfy-multi nginx-config`
 * prints (TLS with a certificate made here, a redirect listener, all on free loopback ports).
 * Through it: login (a Secure cookie, because nginx says X-Forwarded-Proto https), a userdata file
 * whose name holds %2F, the WebSockets, a 60 MB upload, and the plain-HTTP redirect.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type WebSocket from 'ws';
import { TestCa } from '../support/certs.js';
import { nextMessage, openSocket, runToEnd, send } from '../support/https-client.js';
import { NGINX_BIN as NGINX, writeNginxConfig } from '../support/nginx.js';
import { Processes, waitFor } from '../support/processes.js';
import { freePort } from '../support/redis-server.js';
import { addUser } from '../support/serve.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const ADMIN_PASSWORD = 'e2e-admin-password';
const USER_PASSWORD = 'e2e-user001-password';
const WORKER_TOKEN = 'e2e-nginx-worker-token';
const MB = 1024 * 1024;

const procs = new Processes();
let dir: string;
let ca: TestCa;
let upstreamPort: number;
let nginxPort: number;
let redirectPort: number;
let base: string;
let nginx: ChildProcess | undefined;
let nginxExited: Promise<unknown> | undefined;
let siteConfig: string;
const sockets: WebSocket[] = [];

const viaNginx = (path: string, opts: Parameters<typeof send>[1] = {}) =>
  send(`${base}${path}`, { ca: ca.caPem, ...opts });

async function sessionCookie(): Promise<string> {
  const res = await viaNginx('/login', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ user: 'user001', password: USER_PASSWORD }),
  });
  expect(res.status).toBe(200);
  return /^(cm_session=[^;]+)/.exec(String(res.headers['set-cookie']))![1]!;
}

beforeAll(async () => {
  if (!NGINX) throw new Error('nginx is not installed: apt-get install nginx (.ci/run does)');
  dir = mkdtempSync(join(tmpdir(), 'cm-e2e-nginx-'));
  ca = new TestCa(join(dir, 'ca'));
  const cert = ca.issue('site');
  [upstreamPort, nginxPort, redirectPort] = await Promise.all([freePort(), freePort(), freePort()]);
  base = `https://127.0.0.1:${nginxPort}`;
  const env = {
    DATA_DIR: join(dir, 'data'),
    HOST: '127.0.0.1',
    PORT: String(upstreamPort),
    LOG_LEVEL: 'info',
    ADMIN_PASSWORD,
    TRUST_PROXY: 'true',
    UPLOAD_LIMIT: '100mb',
    // Participants' LoRA uploads (LORA_UPLOAD_LIMIT) are smaller here, so UPLOAD_LIMIT sets the size.
    LORA_UPLOAD_LIMIT: '50mb',
    WORKER_TOKENS: `gpu:${WORKER_TOKEN}`,
  };
  procs.run('serve', ['src/cli/index.ts', 'serve'], env);

  // The site exactly as the command prints it, inside a main config that keeps every path here.
  const printed = await runToEnd(
    process.execPath,
    [
      '--import',
      'tsx',
      'src/cli/index.ts',
      'nginx-config',
      '--server-name',
      'localhost',
      '--cert',
      cert.fullchain,
      '--key',
      cert.key,
      '--listen',
      `127.0.0.1:${nginxPort}`,
      '--redirect',
      `127.0.0.1:${redirectPort}`,
    ],
    { cwd: ROOT, env },
  );
  expect(printed.code, printed.stderr).toBe(0);
  siteConfig = printed.stdout;
  const nginxArgs = writeNginxConfig(dir, siteConfig, { errorLogLevel: 'info', workerConnections: 256 });
  const check = await runToEnd(NGINX!, [...nginxArgs, '-t'], { cwd: dir, env: {} });
  expect(check.code, check.stderr).toBe(0);
  nginx = spawn(NGINX!, nginxArgs, { cwd: dir, stdio: 'ignore' });
  nginxExited = new Promise((r) => nginx!.once('exit', r));

  await waitFor(
    async () => (await send(`http://127.0.0.1:${upstreamPort}/health`)).status === 200,
    60_000,
    'the control plane',
  );
  await waitFor(async () => (await viaNginx('/health')).status === 200, 30_000, 'nginx');
  await addUser(procs, env, 'user001', USER_PASSWORD);
}, 120_000);

afterEach((ctx) => {
  if (ctx.task.result?.state === 'fail') {
    console.error(procs.logs());
    if (existsSync(join(dir, 'error.log')))
      console.error(readFileSync(join(dir, 'error.log'), 'utf8').slice(-4000));
  }
});

afterAll(async () => {
  for (const ws of sockets) ws.terminate();
  if (nginx && nginx.exitCode === null) {
    nginx.kill('SIGTERM');
    await nginxExited;
  }
  for (const p of procs.all) await procs.stop(p);
  rmSync(dir, { recursive: true, force: true });
});

describe('behind nginx with the printed config', () => {
  it('keeps the pieces that matter in the printed site', () => {
    expect(siteConfig).toContain('proxy_pass http://comfy_multi;');
    expect(siteConfig).not.toMatch(/proxy_pass http:\/\/comfy_multi\//);
    expect(siteConfig).toContain('merge_slashes off;');
    // UPLOAD_LIMIT=100mb: just above it, so the server's own 413 is what clients see.
    expect(siteConfig).toContain('client_max_body_size 101m;');
  });

  it('logs in through nginx with a Secure cookie (X-Forwarded-Proto https, TRUST_PROXY)', async () => {
    const res = await viaNginx('/login', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ user: 'user001', password: USER_PASSWORD }),
    });
    expect(res.status).toBe(200);
    expect(String(res.headers['set-cookie'])).toMatch(/;\s*Secure/i);
    expect(res.headers['strict-transport-security']).toBe('max-age=31536000');
    // The same login straight to the plain upstream is not Secure: nginx's header made the difference.
    const direct = await send(`http://127.0.0.1:${upstreamPort}/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ user: 'user001', password: USER_PASSWORD }),
    });
    expect(String(direct.headers['set-cookie'])).not.toMatch(/;\s*Secure/i);
  });

  it('round-trips a userdata file whose name holds an encoded slash', async () => {
    const cookie = await sessionCookie();
    const workflow = JSON.stringify({ nodes: [], note: 'through nginx' });
    const saved = await viaNginx('/user001/api/userdata/workflows%2Fnginx%20test.json?overwrite=true', {
      method: 'POST',
      // A browser's POST carries Origin; the server's same-origin check must pass behind nginx.
      headers: { cookie, 'content-type': 'application/json', origin: base },
      body: workflow,
    });
    expect(saved.status, saved.body.toString()).toBe(200);
    const back = await viaNginx('/user001/api/userdata/workflows%2Fnginx%20test.json', {
      headers: { cookie },
    });
    expect(back.status).toBe(200);
    expect(back.body.toString()).toBe(workflow);
    const list = await viaNginx('/user001/api/userdata?dir=workflows', { headers: { cookie } });
    expect(JSON.parse(list.body.toString())).toContain('nginx test.json');
  });

  it('upgrades /user001/ws and /worker/v1/ws', async () => {
    const cookie = await sessionCookie();
    const ws = await openSocket(`wss://127.0.0.1:${nginxPort}/user001/ws?clientId=e2e-nginx`, {
      ca: ca.caPem,
      headers: { cookie },
    });
    sockets.push(ws);
    expect((await nextMessage(ws)).type).toBe('status');
    const worker = await openSocket(`wss://127.0.0.1:${nginxPort}/worker/v1/ws`, {
      ca: ca.caPem,
      headers: { authorization: `Bearer ${WORKER_TOKEN}` },
    });
    sockets.push(worker);
    expect(worker.readyState).toBe(worker.OPEN);
  });

  it('passes a 60 MB upload', async () => {
    const cookie = await sessionCookie();
    const boundary = 'cm-e2e-boundary';
    const file = Buffer.alloc(60 * MB, 7);
    const body = Buffer.concat([
      Buffer.from(
        `--${boundary}\r\nContent-Disposition: form-data; name="image"; filename="big.bin"\r\nContent-Type: application/octet-stream\r\n\r\n`,
      ),
      file,
      Buffer.from(
        `\r\n--${boundary}\r\nContent-Disposition: form-data; name="overwrite"\r\n\r\ntrue\r\n--${boundary}--\r\n`,
      ),
    ]);
    const res = await viaNginx('/user001/upload/image', {
      method: 'POST',
      headers: {
        cookie,
        origin: base,
        'content-type': `multipart/form-data; boundary=${boundary}`,
        'content-length': String(body.length),
      },
      body,
    });
    expect(res.status, res.body.toString()).toBe(200);
    expect(JSON.parse(res.body.toString())).toMatchObject({ name: 'big.bin', type: 'input' });

    // Ranges pass through nginx both ways (a video seeks behind it as without it).
    const part = await viaNginx('/user001/view?filename=big.bin&type=input', {
      headers: { cookie, range: 'bytes=1000-1999' },
    });
    expect(part.status).toBe(206);
    expect(part.headers['content-range']).toBe(`bytes 1000-1999/${60 * MB}`);
    expect(part.body.length).toBe(1000);
  });

  it('redirects plain HTTP to https with the path and query unchanged', async () => {
    const path = '/user001/api/userdata/workflows%2Fa.json?x=1';
    const res = await send(`http://127.0.0.1:${redirectPort}${path}`, {
      headers: { host: `127.0.0.1:${redirectPort}` },
    });
    expect(res.status).toBe(301);
    expect(res.headers.location).toBe(`https://127.0.0.1:${nginxPort}${path}`);
  });
});
