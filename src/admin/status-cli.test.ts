import { execFile } from 'node:child_process';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { runStatus, STATUS_EXIT } from '../cli/commands/status.js';
import {
  API_TOKEN,
  ENV_WORKER_TOKEN,
  PROMPT,
  TestAgent,
  startControlPlane,
  type ControlPlane,
} from '../../test/support/worker-hub-kit.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

let cp: ControlPlane | undefined;
const agents: TestAgent[] = [];

afterEach(async () => {
  for (const a of agents.splice(0)) await a.close();
  await cp?.close();
  cp = undefined;
});

async function status(flags: Parameters<typeof runStatus>[0], env: NodeJS.ProcessEnv = {}) {
  let out = '';
  let err = '';
  const code = await runStatus(flags, env, { out: (s) => (out += s), err: (s) => (err += s) });
  return { code, out, err };
}

/** A port nothing listens on. */
async function deadPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

describe('comfy-multi status', () => {
  it('exits 0 and prints a summary when healthy', async () => {
    cp = await startControlPlane();
    await cp.services.accounts.create('teacher', 'instructor', 'teacher-password-1');
    const r = await status({ server: cp.url, token: API_TOKEN });
    expect(r.code).toBe(STATUS_EXIT.HEALTHY);
    expect(r.out).toMatch(/^comfy-multi \S+ at http:\/\/127\.0\.0\.1:\d+: HEALTHY\n/);
    expect(r.out).toMatch(/store\s+sqlite, reachable/);
    expect(r.out).toMatch(/queue\s+round_robin: 0 waiting, 0 running/);
    expect(r.out).toMatch(/workers\s+none connected/);
    // An instructor login from the environment works too; --json prints the status itself.
    const j = await status(
      { json: true },
      { COMFY_MULTI_SERVER: cp.url, COMFY_MULTI_USER: 'teacher', COMFY_MULTI_PASSWORD: 'teacher-password-1' },
    );
    expect(j.code).toBe(0);
    expect(JSON.parse(j.out)).toMatchObject({ healthy: true, store: { backend: 'sqlite' } });
  });

  it('exits 1 when jobs wait and no healthy worker is connected, 0 once one is', async () => {
    cp = await startControlPlane();
    await cp.services.queue.enqueue({ user: 'alice', prompt: PROMPT });
    const r = await status({ server: cp.url }, { COMFY_MULTI_API_TOKEN: API_TOKEN });
    expect(r.code).toBe(STATUS_EXIT.UNHEALTHY);
    expect(r.out).toContain('UNHEALTHY');
    expect(r.out).toContain('PROBLEM: 1 job(s) are waiting but no GPU worker is connected.');
    const { agent } = await TestAgent.register(cp.wsUrl, ENV_WORKER_TOKEN, { name: 'gpu1' });
    agents.push(agent);
    const ok = await status({ server: cp.url, token: API_TOKEN });
    expect(ok.code).toBe(0);
    expect(ok.out).toMatch(/workers\s+1 known \((1 idle|1 busy)\), 1 usable/);
  });

  it('exits 1 when the store is unreachable or the server does not answer', async () => {
    cp = await startControlPlane();
    await cp.store.close();
    const r = await status({ server: cp.url, token: API_TOKEN });
    expect(r.code).toBe(STATUS_EXIT.UNHEALTHY);
    expect(r.out).toMatch(/store\s+sqlite, UNREACHABLE/);
    const gone = await status({ server: `http://127.0.0.1:${await deadPort()}`, token: API_TOKEN });
    expect(gone.code).toBe(STATUS_EXIT.UNHEALTHY);
    expect(gone.err).toContain('UNREACHABLE');
  });

  it('exits 2 on bad usage or refused credentials', async () => {
    cp = await startControlPlane();
    expect((await status({ server: cp.url })).code).toBe(STATUS_EXIT.USAGE);
    expect((await status({ server: 'ftp://x', token: 'x' })).code).toBe(STATUS_EXIT.USAGE);
    const wrong = await status({ server: cp.url, token: 'not-the-token-000000' });
    expect(wrong.code).toBe(STATUS_EXIT.USAGE);
    expect(wrong.err).toContain('INVALID_TOKEN');
  });

  it('sets the process exit code through the real command line', async () => {
    cp = await startControlPlane();
    await cp.services.queue.enqueue({ user: 'alice', prompt: PROMPT });
    const cli = (env: NodeJS.ProcessEnv) =>
      promisify(execFile)(process.execPath, ['--import', 'tsx', 'src/cli/index.ts', 'status'], {
        cwd: ROOT,
        env: { ...process.env, ...env },
      }).then(
        (r) => ({ code: 0, stdout: r.stdout }),
        (e: { code: number; stdout: string }) => ({ code: e.code, stdout: e.stdout }),
      );
    const r = await cli({ COMFY_MULTI_SERVER: cp.url, COMFY_MULTI_API_TOKEN: API_TOKEN });
    expect(r.code).toBe(1);
    expect(r.stdout).toContain('UNHEALTHY');
    await cp.services.queue.cancel((await cp.store.pendingInOrder(1))[0]!.id);
    expect((await cli({ COMFY_MULTI_SERVER: cp.url, COMFY_MULTI_API_TOKEN: API_TOKEN })).code).toBe(0);
  }, 60_000);
});
