/**
 * End to end through real processes: the control plane (`comfy-multi serve`), two worker agents
 * (`comfy-multi worker`, separate processes) and two ComfyUI stand-ins (separate processes, as
 * `npm run standin` starts them). Jobs go in through `POST /api/v1/jobs`, outputs are checked on
 * disk in DATA_DIR.
 *
 * With `COMFYUI_URL` set, both workers use that real ComfyUI instead of stand-ins and every test
 * runs unchanged, except the ones that need the stand-in's fault injection (skipped, saying so).
 */
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { encodeRgbPng, solidImage } from '../support/comfyui-standin/image.js';
import { modelFreePrompt, scalingPrompt, type ApiPrompt } from '../support/prompts.js';
import { Processes, waitFor, type Proc } from '../support/processes.js';
import { freePort } from '../support/redis-server.js';
import { basicAuth, jsonRequest } from '../support/serve.js';

const REAL_COMFYUI = process.env.COMFYUI_URL?.replace(/\/+$/, '') || null;
const NEEDS_STANDIN = REAL_COMFYUI
  ? 'needs the ComfyUI stand-in fault injection (COMFYUI_URL points at a real ComfyUI)'
  : null;
const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
const ADMIN_PASSWORD = 'e2e-admin-password';
const TOKENS = { w1: 'secret1', w2: 'secret2' } as const;
const LEASE_MS = 3000;

// ---- process harness ---------------------------------------------------------------------------

const procs = new Processes();
const run = (name: string, args: string[], env: Record<string, string>): Proc => procs.run(name, args, env);
const kill = (p: Proc, signal?: NodeJS.Signals): void => procs.kill(p, signal);

// ---- the system under test -------------------------------------------------------------------

let dataDir: string;
let serverUrl: string;
const comfy: Record<'w1' | 'w2', string> = { w1: '', w2: '' };
const workers: Partial<Record<'w1' | 'w2', Proc>> = {};
const auth = basicAuth('admin', ADMIN_PASSWORD);

const api = <T = Record<string, unknown>>(method: string, path: string, body?: unknown) =>
  jsonRequest<T>(serverUrl, auth, method, path, body);

interface JobView {
  id: string;
  user: string;
  status: string;
  attempts: number;
  workerId: string | null;
  error: {
    reason: string;
    message: string;
    nodeId?: string;
    nodeType?: string;
    exceptionType?: string;
    traceback?: string[];
  } | null;
  outputs: {
    nodeId: string;
    filename: string;
    subfolder: string;
    type: string;
    kind: string;
    size?: number;
    sha256?: string;
  }[];
}

interface WorkerView {
  id: string;
  name: string;
  status: string;
  healthy: boolean;
  heldJobs: { jobId: string; state: string }[];
}

async function submit(user: string, prompt: ApiPrompt): Promise<JobView> {
  const r = await api<JobView>('POST', '/api/v1/jobs', { user, prompt });
  expect(r.status, JSON.stringify(r.json)).toBe(201);
  return r.json;
}

const getJob = async (id: string) => (await api<JobView>('GET', `/api/v1/jobs/${id}`)).json;
async function listWorkers(): Promise<WorkerView[]> {
  const r = await api<{ workers: WorkerView[] }>('GET', '/api/v1/workers');
  if (r.status !== 200)
    throw new Error(`GET /api/v1/workers answered ${r.status}: ${JSON.stringify(r.json)}`);
  return r.json.workers;
}

function waitForJob(id: string, statuses: string[], timeoutMs = 30_000): Promise<JobView> {
  return waitFor(
    async () => {
      const j = await getJob(id);
      return statuses.includes(j.status) ? j : null;
    },
    timeoutMs,
    `job ${id} to be ${statuses.join('/')}`,
  );
}

/** The worker ComfyUI is running this job on (its `job_started` arrived). */
function waitForRunningOn(jobId: string, timeoutMs = 20_000): Promise<WorkerView> {
  return waitFor(
    async () =>
      (await listWorkers()).find((w) => w.heldJobs.some((h) => h.jobId === jobId && h.state === 'running')),
    timeoutMs,
    `job ${jobId} running in ComfyUI`,
  );
}

function startWorker(name: 'w1' | 'w2', token: string = TOKENS[name]): Proc {
  const p = run(
    `worker-${name}`,
    [
      'src/cli/index.ts',
      'worker',
      '--server',
      serverUrl,
      '--comfyui',
      comfy[name],
      '--name',
      `gpu-${name}`,
      '--prefetch',
      '1',
    ],
    {
      COMFY_MULTI_TOKEN: token,
      LOG_LEVEL: 'info',
    },
  );
  workers[name] = p;
  return p;
}

const workerId = (name: 'w1' | 'w2') => `${name}:gpu-${name}`;
const nameOf = (id: string | null): 'w1' | 'w2' => (id?.startsWith('w1:') ? 'w1' : 'w2');

function waitForWorkersIdle(timeoutMs = 30_000): Promise<WorkerView[]> {
  return waitFor(
    async () => {
      const ws = await listWorkers();
      const ours = [workerId('w1'), workerId('w2')].map((id) => ws.find((w) => w.id === id));
      return ours.every((w) => w && w.status === 'idle') ? ws : null;
    },
    timeoutMs,
    'both workers idle',
  );
}

let colorCounter = 0x101010;
/** A quick model-free prompt; a fresh color each time so ComfyUI's cache never answers it. */
function quickPrompt(extra: Parameters<typeof modelFreePrompt>[0] = {}): ApiPrompt {
  colorCounter += 0x000101;
  return modelFreePrompt({ color: colorCounter & 0xffffff, ...extra });
}

/** A job that keeps ComfyUI busy for a few seconds: the stand-in's sleep node, or heavy scaling on a real ComfyUI. */
function longPrompt(seconds: number): ApiPrompt {
  colorCounter += 0x000101;
  if (!REAL_COMFYUI)
    return modelFreePrompt({
      color: colorCounter & 0xffffff,
      sleep: { seconds, steps: Math.max(2, Math.round(seconds * 4)) },
      filenamePrefix: `long${colorCounter}`,
    });
  return scalingPrompt({
    hops: Math.max(2, Math.round(seconds * 2)),
    color: colorCounter & 0xffffff,
    filenamePrefix: `long${colorCounter}`,
  });
}

/**
 * The files of a job's own SaveImage prefix (every long prompt has one) in its owner's space:
 * outputs carry ComfyUI's names (`long123_00001_.png`), not a folder named after the job.
 */
function filesOfPrefix(user: string, prompt: ApiPrompt): string[] {
  const prefix = Object.values(prompt).find((n) => n.class_type === 'SaveImage')?.inputs.filename_prefix;
  return filesUnder(join(dataDir, 'files', user, 'output')).filter((f) =>
    f
      .split('/')
      .pop()!
      .startsWith(`${String(prefix)}_`),
  );
}

/** ComfyUI's history entries of a job (its prompts carry `<user>/<jobId>/` in their prefixes). */
async function comfyHistoryOf(
  name: 'w1' | 'w2',
  jobId: string,
): Promise<{ status: { status_str: string; messages: [string, unknown][] } }[]> {
  const res = await fetch(`${comfy[name]}/history`);
  const all = (await res.json()) as Record<
    string,
    {
      prompt: [number, string, Record<string, { inputs: Record<string, unknown> }>];
      status: { status_str: string; messages: [string, unknown][] };
    }
  >;
  return Object.values(all).filter((h) =>
    Object.values(h.prompt[2]).some((n) => String(n.inputs.filename_prefix ?? '').includes(`/${jobId}/`)),
  );
}

async function standinFaults(name: 'w1' | 'w2', body: Record<string, unknown>): Promise<void> {
  const res = await fetch(`${comfy[name]}/standin/faults`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  expect(res.status).toBe(200);
}

function outputFile(job: JobView, i = 0): string {
  const out = job.outputs[i]!;
  return join(dataDir, 'files', job.user, out.type, out.subfolder, out.filename);
}

function expectPng(path: string, size?: number): void {
  expect(existsSync(path), `${path} exists`).toBe(true);
  const bytes = readFileSync(path);
  expect(bytes.subarray(0, 8).equals(PNG_SIGNATURE)).toBe(true);
  expect(bytes.length).toBeGreaterThan(60);
  if (size !== undefined) expect(bytes.length).toBe(size);
}

function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((d) => d.isFile())
    .map((d) => join(d.parentPath, d.name));
}

// ---- lifecycle ------------------------------------------------------------------------------

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'cm-e2e-worker-'));
  const [port, p1, p2] = await Promise.all([freePort(), freePort(), freePort()]);
  serverUrl = `http://127.0.0.1:${port}`;

  const baseEnv = { DATA_DIR: dataDir, LOG_LEVEL: 'warn', ADMIN_PASSWORD };

  if (REAL_COMFYUI) {
    comfy.w1 = REAL_COMFYUI;
    comfy.w2 = REAL_COMFYUI;
  } else {
    for (const [name, p] of [
      ['w1', p1],
      ['w2', p2],
    ] as const) {
      const dir = join(dataDir, `standin-${name}`);
      mkdirSync(dir, { recursive: true });
      run(
        `standin-${name}`,
        ['test/support/comfyui-standin/main.ts', '--port', String(p), '--dir', dir, '--delay-ms', '1000'],
        {},
      );
      comfy[name] = `http://127.0.0.1:${p}`;
    }
  }

  run('serve', ['src/cli/index.ts', 'serve'], {
    ...baseEnv,
    HOST: '127.0.0.1',
    PORT: String(port),
    LEASE_MS: String(LEASE_MS),
    HEARTBEAT_MS: '500',
    WORKER_TOKENS: `w1:${TOKENS.w1},w2:${TOKENS.w2}`,
  });
  await waitFor(async () => (await fetch(`${serverUrl}/health`)).ok, 30_000, 'the control plane');
  // Participants besides admin (the server made admin on its first start).
  // (Their exit code is not checked: submitting jobs for them below proves the accounts exist.)
  await Promise.all(
    ['alice', 'bob'].map(
      (user) => run(`users-add-${user}`, ['src/cli/index.ts', 'users', 'add', user], baseEnv).exited,
    ),
  );
  await Promise.all(
    (['w1', 'w2'] as const).map((n) =>
      waitFor(async () => (await fetch(`${comfy[n]}/system_stats`)).ok, 30_000, `ComfyUI ${n}`),
    ),
  );
  startWorker('w1');
  startWorker('w2');
  await waitForWorkersIdle();
}, 90_000);

afterAll(async () => {
  await procs.killAll();
  if (process.env.E2E_KEEP !== '1' && dataDir) rmSync(dataDir, { recursive: true, force: true });
});

const withLogs = (fn: () => Promise<void>) => procs.withLogs(fn);

// ---- the tests ----------------------------------------------------------------------------------

describe('worker agents end to end', () => {
  it(
    'refuses a bad worker token with 401, on the socket and on the file routes',
    () =>
      withLogs(async () => {
        const wsUrl = `${serverUrl.replace('http', 'ws')}/worker/v1/ws`;
        const status = await new Promise<number>((res, rej) => {
          const ws = new WebSocket(wsUrl, { headers: { authorization: 'Bearer not-a-token' } });
          ws.on('unexpected-response', (_req, r) => res(r.statusCode ?? 0));
          ws.on('open', () => rej(new Error('the socket opened with a bad token')));
          ws.on('error', () => undefined);
        });
        expect(status).toBe(401);
        const put = await fetch(`${serverUrl}/worker/v1/jobs/x/attempts/1/outputs/3/a.png`, {
          method: 'PUT',
          headers: { authorization: 'Bearer nope' },
          body: 'x',
        });
        expect(put.status).toBe(401);

        // An agent with a wrong token is refused, says so, and never shows up as a worker.
        const bad = run(
          'worker-bad',
          ['src/cli/index.ts', 'worker', '--server', serverUrl, '--comfyui', comfy.w1, '--name', 'intruder'],
          {
            COMFY_MULTI_TOKEN: 'wrong-token',
          },
        );
        await waitFor(
          () => bad.log.join('').includes('rejected the worker token (401)'),
          20_000,
          'the agent to report the 401',
        );
        expect(bad.log.join('')).not.toContain('wrong-token');
        expect((await listWorkers()).some((w) => w.name === 'intruder')).toBe(false);
        kill(bad, 'SIGTERM');
        await bad.exited;
      }),
    60_000,
  );

  it(
    "runs the model-free prompt and stores a valid PNG in the right user's output space",
    () =>
      withLogs(async () => {
        const job = await submit('alice', quickPrompt());
        const done = await waitForJob(job.id, ['completed', 'failed']);
        expect(done.status, JSON.stringify(done.error)).toBe('completed');
        expect(done.attempts).toBe(1);
        const saved = done.outputs.filter((o) => o.type === 'output');
        expect(saved).toHaveLength(1);
        expect(saved[0]).toMatchObject({ nodeId: '3', kind: 'images' });
        const path = outputFile(done, done.outputs.indexOf(saved[0]!));
        expect(path.startsWith(join(dataDir, 'files', 'alice', 'output'))).toBe(true);
        expectPng(path, saved[0]!.size);
        // 64×48, as the prompt asked (IHDR width and height).
        const png = readFileSync(path);
        expect([png.readUInt32BE(16), png.readUInt32BE(20)]).toEqual([64, 48]);
        expect(filesUnder(join(dataDir, 'files', 'bob', 'output'))).toEqual([]);
      }),
    60_000,
  );

  it(
    'two workers drain a queue of mixed jobs from several users into the right spaces',
    () =>
      withLogs(async () => {
        const jobs: JobView[] = [];
        for (let i = 0; i < 6; i++) {
          const user = i % 2 === 0 ? 'alice' : 'bob';
          jobs.push(
            await submit(
              user,
              i % 3 === 0 ? longPrompt(0.5) : quickPrompt({ filenamePrefix: `set/${user}` }),
            ),
          );
        }
        const done = await Promise.all(jobs.map((j) => waitForJob(j.id, ['completed', 'failed'], 60_000)));
        for (const d of done) {
          expect(d.status, JSON.stringify(d.error)).toBe('completed');
          for (let i = 0; i < d.outputs.length; i++) {
            const path = outputFile(d, i);
            expect(path.startsWith(join(dataDir, 'files', d.user))).toBe(true);
            expectPng(path, d.outputs[i]!.size);
          }
        }
        if (!REAL_COMFYUI) expect(new Set(done.map((d) => d.workerId)).size).toBe(2);
      }),
    90_000,
  );

  it(
    'cancels a running job: ComfyUI interrupts exactly that prompt',
    () =>
      withLogs(async () => {
        const prompt = longPrompt(8);
        const job = await submit('alice', prompt);
        const w = await waitForRunningOn(job.id);
        const r = await api<JobView>('DELETE', `/api/v1/jobs/${job.id}`);
        expect(r.status).toBe(200);
        expect(r.json.status).toBe('cancelled');
        const name = nameOf(w.id);
        const entries = await waitFor(
          async () => {
            const h = await comfyHistoryOf(name, job.id);
            return h.length > 0 ? h : null;
          },
          20_000,
          'the interrupted prompt in ComfyUI history',
        );
        expect(entries[0]!.status.messages.some(([t]) => t === 'execution_interrupted')).toBe(true);
        expect((await getJob(job.id)).status).toBe('cancelled');
        expect(filesOfPrefix('alice', prompt)).toEqual([]);
        // The worker is free again and takes the next job.
        const next = await submit('alice', quickPrompt());
        expect((await waitForJob(next.id, ['completed', 'failed'])).status).toBe('completed');
      }),
    60_000,
  );

  it(
    "cancels pending jobs: one waiting in the central queue, one prefetched into ComfyUI's queue",
    () =>
      withLogs(async () => {
        // (a) In the central queue: paused, so nothing is dispatched.
        expect((await api('PUT', '/api/v1/queue', { paused: true })).status).toBe(200);
        const waiting = await submit('alice', quickPrompt());
        const cancelled = await api<JobView>('DELETE', `/api/v1/jobs/${waiting.id}`);
        expect(cancelled.json.status).toBe('cancelled');
        expect((await api('PUT', '/api/v1/queue', { paused: false })).status).toBe(200);

        // (b) Prefetched: everything goes to w1 while w2 drains; the second job waits in w1's ComfyUI queue.
        expect(
          (
            await api('POST', `/api/v1/workers/${encodeURIComponent(workerId('w2'))}/drain`, {
              draining: true,
            })
          ).status,
        ).toBe(200);
        try {
          const running = await submit('alice', longPrompt(3));
          const queued = await submit('alice', quickPrompt());
          await waitForRunningOn(running.id);
          await waitFor(
            async () =>
              (await listWorkers()).find((w) =>
                w.heldJobs.some((h) => h.jobId === queued.id && h.state === 'queued'),
              ),
            10_000,
            'the second job prefetched',
          );
          const r = await api<JobView>('DELETE', `/api/v1/jobs/${queued.id}`);
          expect(r.json.status).toBe('cancelled');
          const first = await waitForJob(running.id, ['completed', 'failed']);
          expect(first.status).toBe('completed');
          expect(await comfyHistoryOf('w1', queued.id)).toEqual([]);
          expect((await getJob(queued.id)).status).toBe('cancelled');
        } finally {
          await api('POST', `/api/v1/workers/${encodeURIComponent(workerId('w2'))}/drain`, {
            draining: false,
          });
        }
        expect(await comfyHistoryOf('w1', waiting.id)).toEqual([]);
        expect(await comfyHistoryOf('w2', waiting.id)).toEqual([]);
        await waitForWorkersIdle();
      }),
    60_000,
  );

  it(
    "Pause means nothing new starts: a job sent ahead into ComfyUI's queue is taken back",
    () =>
      withLogs(async () => {
        const w2 = `/api/v1/workers/${encodeURIComponent(workerId('w2'))}/drain`;
        expect((await api('POST', w2, { draining: true })).status).toBe(200);
        try {
          const running = await submit('alice', longPrompt(3));
          const sentAhead = await submit('bob', quickPrompt());
          await waitForRunningOn(running.id);
          await waitFor(
            async () =>
              (await listWorkers()).find((w) =>
                w.heldJobs.some((h) => h.jobId === sentAhead.id && h.state === 'queued'),
              ),
            10_000,
            'the second job sent ahead into ComfyUI',
          );
          expect((await api('PUT', '/api/v1/queue', { paused: true })).status).toBe(200);
          // Back in the central queue, unstarted and its attempt uncounted; the running one finishes.
          const back = await waitForJob(sentAhead.id, ['pending'], 10_000);
          expect(back).toMatchObject({ attempts: 0, workerId: null });
          expect((await waitForJob(running.id, ['completed', 'failed'])).status).toBe('completed');
          // Well past the moment ComfyUI would have started it (the issue saw ~6 s): still waiting,
          // never run, and the GPU holds nothing.
          await new Promise((r) => setTimeout(r, 3000));
          expect((await getJob(sentAhead.id)).status).toBe('pending');
          expect(await comfyHistoryOf('w1', sentAhead.id)).toEqual([]);
          const w1 = (await listWorkers()).find((w) => w.id === workerId('w1'));
          expect(w1?.heldJobs).toEqual([]);
        } finally {
          expect((await api('PUT', '/api/v1/queue', { paused: false })).status).toBe(200);
          await api('POST', w2, { draining: false });
        }
        await waitForWorkersIdle();
      }),
    60_000,
  );

  it(
    "fails a job with ComfyUI's error details on execution_error",
    () =>
      withLogs(async () => {
        // Not an image, named like one: it passes validation and fails inside LoadImage.
        const inputDir = join(dataDir, 'files', 'alice', 'input');
        mkdirSync(inputDir, { recursive: true });
        writeFileSync(join(inputDir, 'corrupt.png'), 'this is not a PNG file');
        const job = await submit('alice', modelFreePrompt({ loadImage: 'corrupt.png' }));
        const done = await waitForJob(job.id, ['completed', 'failed']);
        expect(done.status).toBe('failed');
        expect(done.error).toMatchObject({ reason: 'execution_error', nodeId: '1', nodeType: 'LoadImage' });
        expect(done.error!.message).toMatch(/cannot identify image file/);
        expect(done.error!.traceback?.length ?? 0).toBeGreaterThan(0);
      }),
    60_000,
  );

  it(
    'runs a prompt whose input the user uploaded: the file travels to ComfyUI',
    () =>
      withLogs(async () => {
        const inputDir = join(dataDir, 'files', 'bob', 'input', 'pets');
        mkdirSync(inputDir, { recursive: true });
        writeFileSync(
          join(inputDir, 'dog.png'),
          encodeRgbPng(solidImage(20, 10, 1, 0x335577).frames[0]!, 20, 10),
        );
        const job = await submit('bob', modelFreePrompt({ loadImage: 'pets/dog.png' }));
        const done = await waitForJob(job.id, ['completed', 'failed']);
        expect(done.status, JSON.stringify(done.error)).toBe('completed');
        const png = readFileSync(
          outputFile(
            done,
            done.outputs.findIndex((o) => o.type === 'output'),
          ),
        );
        expect([png.readUInt32BE(16), png.readUInt32BE(20)]).toEqual([20, 10]);
      }),
    60_000,
  );

  it.skipIf(NEEDS_STANDIN)(
    'marks a worker unhealthy when its ComfyUI stops answering and requeues its job',
    () =>
      withLogs(async () => {
        const job = await submit('alice', longPrompt(4));
        const w = await waitForRunningOn(job.id);
        const name = nameOf(w.id);
        const other = name === 'w1' ? 'w2' : 'w1';
        // Every ComfyUI route answers 503 and its WebSockets drop (the stand-in's control routes
        // keep working, so this other process can undo it).
        await standinFaults(name, { unreachable: '503' });
        try {
          await waitFor(
            async () => (await listWorkers()).find((x) => x.id === w.id && x.status === 'unhealthy'),
            10_000,
            `${w.id} unhealthy`,
          );
          const done = await waitForJob(job.id, ['completed', 'failed'], 40_000);
          expect(done.status, JSON.stringify(done.error)).toBe('completed');
          expect(done.workerId).toBe(workerId(other));
          expect(done.outputs.filter((o) => o.type === 'output')).toHaveLength(1);
          expect((await listWorkers()).find((x) => x.id === w.id)?.status).toBe('unhealthy');
        } finally {
          await standinFaults(name, { unreachable: false });
        }
        // ComfyUI answers again: the worker rejoins.
        await waitFor(
          async () => (await listWorkers()).find((x) => x.id === w.id && x.healthy && x.status === 'idle'),
          30_000,
          `${w.id} healthy again`,
        );
      }),
    90_000,
  );

  it(
    'requeues the job of a worker killed with SIGKILL; the other worker completes it exactly once',
    () =>
      withLogs(async () => {
        await waitForWorkersIdle();
        const prompt = longPrompt(5);
        const job = await submit('alice', prompt);
        const w = await waitForRunningOn(job.id);
        const victim = nameOf(w.id);
        const survivor = victim === 'w1' ? 'w2' : 'w1';
        kill(workers[victim]!, 'SIGKILL');
        await workers[victim]!.exited;

        const done = await waitForJob(job.id, ['completed', 'failed'], 60_000);
        expect(done.status, JSON.stringify(done.error)).toBe('completed');
        const saved = done.outputs.filter((o) => o.type === 'output');
        expect(saved).toHaveLength(1);
        expectPng(outputFile(done, done.outputs.indexOf(saved[0]!)), saved[0]!.size);
        // One set of outputs in the user's space for this job.
        const files = filesOfPrefix('alice', prompt);
        expect(files).toHaveLength(1);
        if (!REAL_COMFYUI) {
          expect(done.attempts).toBe(2);
          expect(done.workerId).toBe(workerId(survivor));
        }
        // Nothing completes it a second time later.
        const list = await api<{ jobs: JobView[] }>('GET', '/api/v1/jobs?user=alice&limit=500');
        expect(list.json.jobs.filter((j) => j.id === job.id)).toHaveLength(1);
        const again = await getJob(job.id);
        expect(again.outputs).toEqual(done.outputs);
        expect(statSync(files[0]!).size).toBe(saved[0]!.size);

        // Bring the worker back for anyone after us.
        startWorker(victim);
        await waitForWorkersIdle(60_000);
      }),
    120_000,
  );
});
