/**
 * End to end through real processes: the control plane runs without FRONTEND_DIR, a worker agent
 * copies the web frontend its ComfyUI serves, and participants get that frontend at `/<user>/`
 * byte for byte, also after the control plane restarts with no worker online.
 *
 * The stand-in serves test/fixtures/mini-frontend (a small Vite-style build) and one custom node's
 * web folder. With `COMFYUI_URL` set, the worker mirrors that real ComfyUI's frontend instead and
 * every check runs unchanged.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Processes, waitFor, type Proc } from '../support/processes.js';
import { freePort } from '../support/redis-server.js';
import { addUser, basicAuth, startServe } from '../support/serve.js';

const REAL_COMFYUI = process.env.COMFYUI_URL?.replace(/\/+$/, '') || null;
const ADMIN_PASSWORD = 'e2e-admin-password';
const USER_PASSWORD = 'e2e-user001-password';
const WORKER_TOKEN = 'e2e-frontend-worker-token';

const procs = new Processes();

let dataDir: string;
let serverUrl: string;
let comfyUrl: string;
let serverEnv: Record<string, string>;
let server: Proc;
let worker: Proc;
const participant = { authorization: basicAuth('user001', USER_PASSWORD) };

const bytes = async (res: Response) => Buffer.from(await res.arrayBuffer());
const fromServer = (path: string) => fetch(`${serverUrl}/user001/${path}`, { headers: participant });
const fromComfy = (path: string) => fetch(`${comfyUrl}/${path}`);

const startServer = () => startServe(procs, serverEnv);

/** Relative files `index.html` names (scripts, styles, icons, preloads), as a browser fetches them. */
function referencedFiles(html: string): string[] {
  const out = new Set<string>();
  for (const m of html.matchAll(/\b(?:src|href)\s*=\s*["']([^"'#?]+)/g)) {
    const ref = m[1]!.replace(/^\.\//, '');
    if (/^[a-z]+:|^\/|^api\//i.test(ref) || !/\.\w+$/.test(ref)) continue;
    out.add(ref);
  }
  return [...out];
}

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'cm-e2e-frontend-'));
  const [port, comfyPort] = await Promise.all([freePort(), freePort()]);
  serverUrl = `http://127.0.0.1:${port}`;
  if (REAL_COMFYUI) {
    comfyUrl = REAL_COMFYUI;
  } else {
    comfyUrl = `http://127.0.0.1:${comfyPort}`;
    procs.run(
      'standin',
      [
        'test/support/comfyui-standin/main.ts',
        '--port',
        String(comfyPort),
        '--dir',
        join(dataDir, 'standin'),
        '--frontend-root',
        'test/fixtures/mini-frontend',
        '--extension-dir',
        'hello=test/fixtures/mini-extension',
      ],
      {},
    );
    await waitFor(async () => (await fetch(`${comfyUrl}/system_stats`)).ok, 30_000, 'the ComfyUI stand-in');
  }
  serverEnv = {
    DATA_DIR: dataDir,
    HOST: '127.0.0.1',
    PORT: String(port),
    LOG_LEVEL: 'info',
    ADMIN_PASSWORD,
    WORKER_TOKENS: `gpu:${WORKER_TOKEN}`,
  };
  // The server first: its first start creates `admin` with ADMIN_PASSWORD. Accounts added by the
  // CLI while it runs take effect at once.
  server = await startServer();
  await addUser(procs, serverEnv, 'user001', USER_PASSWORD);
}, 90_000);

// On failure, the processes' output says more than the assertion alone.
afterEach((ctx) => {
  if (ctx.task.result?.state === 'fail') console.error(procs.logs());
});

afterAll(async () => {
  for (const p of procs.all) await procs.stop(p);
  rmSync(dataDir, { recursive: true, force: true });
});

describe('the ComfyUI frontend, mirrored from a worker', () => {
  it('shows participants a page that waits for the first worker', async () => {
    const res = await fromServer('');
    expect(res.status).toBe(503);
    expect(await res.text()).toContain('first GPU worker has connected');
  });

  it("serves the worker's ComfyUI frontend byte for byte once the worker has connected", async () => {
    worker = procs.run(
      'worker',
      ['src/cli/index.ts', 'worker', '--server', serverUrl, '--comfyui', comfyUrl, '--name', 'gpu1'],
      {
        COMFY_MULTI_TOKEN: WORKER_TOKEN,
        LOG_LEVEL: 'info',
      },
    );
    const index = await waitFor(
      async () => {
        const res = await fromServer('');
        return res.status === 200 ? res.text() : null;
      },
      60_000,
      'the mirrored frontend at /user001/',
    );
    expect(index).toBe(await (await fromComfy('')).text());

    const files = referencedFiles(index);
    expect(files.length).toBeGreaterThan(0);
    for (const f of files) {
      const [mine, theirs] = await Promise.all([fromServer(f), fromComfy(f)]);
      if (f === 'user.css' && theirs.status === 404) {
        // The real index.html links a `user.css` hook that no frontend ships: ComfyUI answers
        // 404, the gateway (on purpose) an empty stylesheet, sparing every page load an error.
        await theirs.arrayBuffer();
        expect(mine.status, f).toBe(200);
        expect(mine.headers.get('content-type'), f).toMatch(/^text\/css/);
        expect((await bytes(mine)).length, f).toBe(0);
        continue;
      }
      expect(mine.status, f).toBe(theirs.status);
      expect((await bytes(mine)).equals(await bytes(theirs)), f).toBe(true);
    }

    // Custom nodes' web files come along, where the frontend will load them from.
    const extensions = (await (await fromComfy('extensions')).json()) as string[];
    if (!REAL_COMFYUI) expect(extensions).toContain('/extensions/hello/js/hello.js');
    for (const e of extensions) {
      const rel = e.replace(/^\//, '');
      const mine = await fromServer(rel);
      expect(mine.status, e).toBe(200);
      expect((await bytes(mine)).equals(await bytes(await fromComfy(rel))), e).toBe(true);
    }
  });

  it('tells instructors which frontend is served and where it came from', async () => {
    const admin = { authorization: basicAuth('admin', ADMIN_PASSWORD) };
    const res = await fetch(`${serverUrl}/api/v1/status`, { headers: admin });
    expect(res.status).toBe(200);
    const status = (await res.json()) as {
      frontend: { source: string; workerId: string; files: number };
    };
    expect(status.frontend).toMatchObject({ source: 'mirror', workerId: 'gpu' });
    expect(status.frontend.files).toBeGreaterThan(1);
  });

  it('keeps serving it after a restart of the control plane with no worker online', async () => {
    const before = await (await fromServer('')).text();
    await procs.stop(worker);
    await procs.stop(server);
    server = await startServer();
    const res = await fromServer('');
    expect(res.status).toBe(200);
    expect(await res.text()).toBe(before);
    for (const f of referencedFiles(before)) expect((await fromServer(f)).status, f).toBe(200);
  });
});
