/**
 * Control-plane restarts end to end, through real processes: `comfy-multi serve` (SQLite), one
 * worker agent (`comfy-multi worker`) and one ComfyUI stand-in (or a real ComfyUI with
 * `COMFYUI_URL`). The control plane is killed with SIGKILL while a slow job runs and started
 * again (a) within the lease and (b) after an outage longer than the lease, during which the job
 * finishes. Either way the job completes once, with its outputs once, and ComfyUI executed it
 * exactly once: reports wait in the agent until acknowledged and running jobs are re-adopted.
 * Then a worker token is revoked by the CLI (another process) while its agent runs a job: the agent
 * is disconnected and exits (78), the job goes back to the queue uncounted and completes elsewhere.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { modelFreePrompt, scalingPrompt, type ApiPrompt } from '../support/prompts.js';
import { Processes, waitFor, type Proc } from '../support/processes.js';
import { freePort } from '../support/redis-server.js';
import { basicAuth, jsonRequest } from '../support/serve.js';

const REAL_COMFYUI = process.env.COMFYUI_URL?.replace(/\/+$/, '') || null;
const ADMIN_PASSWORD = 'e2e-admin-password';
const TOKEN = 'restart-secret-1';
const WORKER_ID = 'w1:gpu-r';

const procs = new Processes();
let dataDir: string;
let port: number;
let serverUrl: string;
let comfyUrl: string;
let server: Proc | null = null;
const auth = basicAuth('admin', ADMIN_PASSWORD);

interface JobView {
  id: string;
  user: string;
  status: string;
  attempts: number;
  outputs: { filename: string; subfolder: string; type: string }[];
}

const api = <T>(method: string, path: string, body?: unknown) =>
  jsonRequest<T>(serverUrl, auth, method, path, body);

/** Starts the control plane on the same port and data folder every time. */
async function startServer(leaseMs: number): Promise<void> {
  server = procs.run(`serve-${procs.all.length}`, ['src/cli/index.ts', 'serve'], {
    DATA_DIR: dataDir,
    LOG_LEVEL: 'info',
    ADMIN_PASSWORD,
    HOST: '127.0.0.1',
    PORT: String(port),
    LEASE_MS: String(leaseMs),
    HEARTBEAT_MS: '500',
    WORKER_TOKENS: `w1:${TOKEN}`,
  });
  await waitFor(async () => (await fetch(`${serverUrl}/health`)).ok, 60_000, 'the control plane');
}

async function killServer(): Promise<void> {
  const s = server!;
  procs.kill(s, 'SIGKILL');
  await s.exited;
  server = null;
}

const workerView = async () =>
  (
    await api<{ workers: { id: string; status: string; heldJobs: { jobId: string; state: string }[] }[] }>(
      'GET',
      '/api/v1/workers',
    )
  ).json.workers.find((w) => w.id === WORKER_ID);

const waitIdle = () =>
  waitFor(async () => (await workerView())?.status === 'idle', 60_000, 'the worker connected and idle');

let colour = 0x203040;
/** Keeps ComfyUI busy for `seconds` (the stand-in's sleep node, or heavy scaling on a real one). */
function slowPrompt(seconds: number): ApiPrompt {
  colour += 0x000101;
  if (!REAL_COMFYUI)
    return modelFreePrompt({
      color: colour,
      sleep: { seconds, steps: Math.max(2, seconds * 2) },
      filenamePrefix: `slow${colour}`,
    });
  return scalingPrompt({ hops: seconds * 2, color: colour, filenamePrefix: `slow${colour}` });
}

/** How often ComfyUI started executing a prompt of this job (its prefixes carry `/<jobId>/`). */
async function executionsOf(jobId: string): Promise<number> {
  if (!REAL_COMFYUI) {
    const state = (await (await fetch(`${comfyUrl}/standin/state`)).json()) as {
      executions: { filenamePrefixes: string[] }[];
    };
    return state.executions.filter((e) => e.filenamePrefixes.some((p) => p.includes(`/${jobId}/`))).length;
  }
  const all = (await (await fetch(`${comfyUrl}/history`)).json()) as Record<
    string,
    { prompt: [number, string, Record<string, { inputs: Record<string, unknown> }>] }
  >;
  return Object.values(all).filter((h) =>
    Object.values(h.prompt[2]).some((n) => String(n.inputs.filename_prefix ?? '').includes(`/${jobId}/`)),
  ).length;
}

/** Every file stored for the job in its owner's output space. */
/**
 * The files of the job's SaveImage prefix (each slow prompt has its own) in its owner's space:
 * outputs carry ComfyUI's names (`slow123_00001_.png`), not a folder named after the job.
 */
function outputFilesOf(job: JobView): string[] {
  const dir = join(dataDir, 'files', job.user, 'output');
  if (!existsSync(dir)) return [];
  const prefix = (job.outputs[0]?.filename ?? '').replace(/_\d{5,}_\.png$/, '_');
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((d) => d.isFile() && prefix !== '_' && d.name.startsWith(prefix))
    .map((d) => join(d.parentPath, d.name));
}

async function runningInComfy(jobId: string): Promise<void> {
  await waitFor(
    async () => (await workerView())?.heldJobs.some((h) => h.jobId === jobId && h.state === 'running'),
    60_000,
    `job ${jobId} running in ComfyUI`,
  );
}

async function expectRanOnce(jobId: string): Promise<void> {
  const job = await waitFor(
    async () => {
      const j = (await api<JobView>('GET', `/api/v1/jobs/${jobId}`)).json;
      return j.status === 'completed' || j.status === 'failed' ? j : null;
    },
    90_000,
    `job ${jobId} to finish`,
  );
  expect(job.status).toBe('completed');
  expect(job.attempts).toBe(1);
  expect(job.outputs).toHaveLength(1);
  // The outputs exist once: the listed file, and no second set from a re-run.
  const files = outputFilesOf(job);
  const out = job.outputs[0]!;
  expect(files).toEqual([join(dataDir, 'files', job.user, out.type, out.subfolder, out.filename)]);
  expect(await executionsOf(jobId)).toBe(1);
}

const withLogs = (fn: () => Promise<void>) => procs.withLogs(fn);

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'cm-e2e-restart-'));
  const comfyPort = await freePort();
  port = await freePort();
  serverUrl = `http://127.0.0.1:${port}`;
  if (REAL_COMFYUI) comfyUrl = REAL_COMFYUI;
  else {
    const dir = join(dataDir, 'standin');
    mkdirSync(dir, { recursive: true });
    procs.run(
      'standin',
      ['test/support/comfyui-standin/main.ts', '--port', String(comfyPort), '--dir', dir],
      {},
    );
    comfyUrl = `http://127.0.0.1:${comfyPort}`;
  }
  await startServer(30_000);
  await procs.run('users-add', ['src/cli/index.ts', 'users', 'add', 'alice'], {
    DATA_DIR: dataDir,
    LOG_LEVEL: 'warn',
    ADMIN_PASSWORD,
  }).exited;
  await waitFor(async () => (await fetch(`${comfyUrl}/system_stats`)).ok, 30_000, 'ComfyUI');
  procs.run(
    'worker',
    ['src/cli/index.ts', 'worker', '--server', serverUrl, '--comfyui', comfyUrl, '--name', 'gpu-r'],
    { COMFY_MULTI_TOKEN: TOKEN, LOG_LEVEL: 'info' },
  );
  await waitIdle();
}, 120_000);

afterAll(async () => {
  await procs.killAll();
  if (process.env.E2E_KEEP !== '1' && dataDir) rmSync(dataDir, { recursive: true, force: true });
});

describe('a control-plane restart', () => {
  it(
    'within the lease: the worker reconnects, keeps running its job, and the result is accepted; nothing re-runs',
    () =>
      withLogs(async () => {
        const r = await api<JobView>('POST', '/api/v1/jobs', { user: 'alice', prompt: slowPrompt(6) });
        expect(r.status).toBe(201);
        await runningInComfy(r.json.id);
        await killServer();
        await startServer(30_000);
        await expectRanOnce(r.json.id);
      }),
    180_000,
  );

  it(
    'longer than the lease, while the job finishes: the report waits in the agent and the job does not run again',
    () =>
      withLogs(async () => {
        // A short lease, so an outage of twice the lease stays quick.
        await killServer();
        await startServer(3000);
        await waitIdle();
        const r = await api<JobView>('POST', '/api/v1/jobs', { user: 'alice', prompt: slowPrompt(3) });
        expect(r.status).toBe(201);
        await runningInComfy(r.json.id);
        await killServer();
        // The job finishes in ComfyUI while nobody listens; the outage outlasts the lease twice.
        await new Promise((resolve) => setTimeout(resolve, 6000));
        await startServer(3000);
        await expectRanOnce(r.json.id);
      }),
    180_000,
  );
});

describe('revoking a worker token from the CLI while its agent runs a job', () => {
  it(
    'disconnects the agent (it exits 78), requeues the job uncounted, and the job completes on another GPU',
    () =>
      withLogs(async () => {
        const env = { DATA_DIR: dataDir, LOG_LEVEL: 'warn', ADMIN_PASSWORD };
        const created = procs.run(
          'token-create',
          ['src/cli/index.ts', 'workers', 'token', 'create', 'rv'],
          env,
        );
        expect(await created.exited).toBe(0);
        const token = created.log.join('').split('\n')[1]!.trim();
        expect(token.length).toBeGreaterThan(20);
        // Keep the first GPU out of the way so the job goes to the one about to lose its token.
        expect((await api('POST', `/api/v1/workers/${WORKER_ID}/drain`, { draining: true })).status).toBe(
          200,
        );
        const doomed = procs.run(
          'worker-rv',
          ['src/cli/index.ts', 'worker', '--server', serverUrl, '--comfyui', comfyUrl, '--name', 'gpu-rv'],
          { COMFY_MULTI_TOKEN: token, LOG_LEVEL: 'info' },
        );
        const r = await api<JobView>('POST', '/api/v1/jobs', { user: 'alice', prompt: slowPrompt(20) });
        expect(r.status).toBe(201);
        await waitFor(
          async () =>
            (await api<JobView & { workerId: string | null }>('GET', `/api/v1/jobs/${r.json.id}`)).json
              .workerId === 'rv:gpu-rv',
          60_000,
          'the job on the doomed worker',
        );
        const revoke = procs.run(
          'token-revoke',
          ['src/cli/index.ts', 'workers', 'token', 'revoke', 'rv'],
          env,
        );
        expect(await revoke.exited).toBe(0);
        expect(await doomed.exited).toBe(78);
        expect(doomed.log.join('')).toMatch(/revoked/);
        const back = (await api<JobView>('GET', `/api/v1/jobs/${r.json.id}`)).json;
        expect(back).toMatchObject({ status: 'pending', attempts: 0 });
        // The job was not failed; another GPU runs it as its first counted attempt.
        expect((await api('POST', `/api/v1/workers/${WORKER_ID}/drain`, { draining: false })).status).toBe(
          200,
        );
        const done = await waitFor(
          async () => {
            const j = (await api<JobView>('GET', `/api/v1/jobs/${r.json.id}`)).json;
            return j.status === 'completed' || j.status === 'failed' ? j : null;
          },
          90_000,
          'the job to finish elsewhere',
        );
        expect(done).toMatchObject({ status: 'completed', attempts: 1 });
        expect(done.outputs).toHaveLength(1);
      }),
    180_000,
  );
});
