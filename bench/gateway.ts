/**
 * Per-user ComfyUI gateway benchmark: the control plane (real SQLite store, real env snapshot) in a
 * child process, and 20, 100 and 1,000 participants, each holding an open `/<user>/ws` (with the
 * frontend's feature_flags) and polling `/<user>/api/jobs` like the frontend does (every 2 s, and
 * on every `status` message). Under that load:
 *
 * - `rss_mb_<n>`: the control plane's resident memory (max over the run);
 * - `prompt_p50_ms_<n>` / `prompt_p99_ms_<n>`: `POST /<user>/api/prompt` round trips (validation
 *   against the stored object_info + enqueue), sequential, from random participants;
 * - `jobs_p99_ms_<n>`: the polling requests' round trips;
 * - `server_loop_delay_max_ms_<n>`: the server's longest event-loop stall while measuring.
 *
 * Participants authenticate with session cookies (minted with the store's key, as a login would),
 * so no bcrypt runs during the measurement. The server runs compiled (dist/, `npm run build`).
 * Run alone: `npx tsx bench/gateway.ts`
 * (env BENCH_GATEWAY_USERS, default `20,100,1000`; BENCH_GATEWAY_PROMPTS, default 300).
 */
import http from 'node:http';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { WebSocket } from 'ws';
import { SESSION_COOKIE } from '../src/auth/sessions.js';
import { saveEnv, setCurrentEnv } from '../src/dispatch/env-snapshots.js';
import type { EnvSnapshot } from '../src/worker/protocol.js';
import { modelFreePrompt } from '../test/support/prompts.js';
import { ask, forkServer } from './server-process.js';
import { participantSessions } from './sessions.js';
import { percentile } from './stats.js';

type Figures = Record<string, number>;

const POLL_MS = 2000;
const OBJECT_INFO = new URL(
  '../test/support/comfyui-standin/vendored/object_info.v0.3.64.json',
  import.meta.url,
);

function snapshot(): EnvSnapshot {
  return {
    comfyuiVersion: '0.3.64',
    objectInfo: JSON.parse(readFileSync(OBJECT_INFO, 'utf8')) as Record<string, unknown>,
    embeddings: [],
    models: { checkpoints: [] },
    extensions: [],
    systemStats: { system: { comfyui_version: '0.3.64' }, devices: [] },
  };
}

async function prepare(dir: string, users: string[]): Promise<string[]> {
  return participantSessions(dir, users, {
    maxPendingPerUser: 1_000_000,
    setup: async (store) => {
      const env = snapshot();
      const hash = createHash('sha256').update(JSON.stringify(env)).digest('hex');
      await saveEnv(store, hash, env);
      await setCurrentEnv(store, { hash, workerId: 'bench', at: Date.now() });
    },
  });
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });

/** One HTTP request over a keep-alive connection; resolves with the status once the body is read. */
function request(
  url: string,
  opts: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: opts.method ?? 'GET', headers: opts.headers, agent }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

async function runOne(n: number, prompts: number): Promise<Figures> {
  const dir = await mkdtemp(join(tmpdir(), 'cm-bench-gw-'));
  const users = Array.from({ length: n }, (_, i) => `user${String(i + 1).padStart(4, '0')}`);
  const cookies = await prepare(dir, users);
  const child = forkServer(
    dir,
    { MAX_PENDING_PER_USER: '100000', ADMIN_PASSWORD: 'bench-admin-password' },
    process.env.BENCH_GW_PROF,
  );
  const sockets: WebSocket[] = [];
  const timers: NodeJS.Timeout[] = [];
  let stopped = false;
  try {
    const { url } = (await ask(child, 'ready')) as { url: string };
    const header = (i: number) => ({ cookie: `${SESSION_COOKIE}=${cookies[i]}` });
    const jobsLatency: number[] = [];
    let measuring = false;
    const poll = async (i: number) => {
      if (stopped) return;
      const t0 = performance.now();
      try {
        const status = await request(
          `${url}/${users[i]}/api/jobs?status=in_progress,pending&limit=200&offset=0`,
          { headers: header(i) },
        );
        if (status === 200 && measuring) jobsLatency.push(performance.now() - t0);
      } catch {
        // a refused poll under overload simply does not count
      }
    };

    // Every participant opens the socket like the frontend (clientId, feature_flags first).
    for (let start = 0; start < n; start += 50) {
      await Promise.all(
        users.slice(start, start + 50).map(
          (u, k) =>
            new Promise<void>((resolve, reject) => {
              const i = start + k;
              const ws = new WebSocket(`${url.replace('http', 'ws')}/${u}/ws?clientId=bench-${u}`, {
                headers: header(i),
              });
              ws.once('open', () => {
                ws.send(JSON.stringify({ type: 'feature_flags', data: { supports_preview_metadata: true } }));
                resolve();
              });
              ws.once('error', reject);
              ws.on('message', (data, binary) => {
                if (!binary && String(data).startsWith('{"type":"status"')) void poll(i);
              });
              sockets.push(ws);
            }),
        ),
      );
    }
    users.forEach((_, i) => {
      const t = setTimeout(
        () => timers.push(setInterval(() => void poll(i), POLL_MS)),
        Math.random() * POLL_MS,
      );
      timers.push(t);
    });

    let rss = 0;
    let loopMax = 0;
    const sample = async () => {
      const m = (await ask(child, 'rss')) as { rss: number; loopMaxMs: number };
      rss = Math.max(rss, m.rss);
      loopMax = m.loopMaxMs;
    };
    await new Promise((r) => setTimeout(r, POLL_MS + 500));
    await sample();
    const sampler = setInterval(() => void sample().catch(() => undefined), 500);
    timers.push(sampler);

    const body = JSON.stringify({ prompt: modelFreePrompt(), client_id: 'bench' });
    const promptLatency: number[] = [];
    // Warm-up (JIT, first parse of the stored object_info) is not measured.
    for (let k = -50; k < prompts; k++) {
      if (k === 0) {
        measuring = true;
        await ask(child, 'reset');
      }
      const i = Math.floor(Math.random() * n);
      const t0 = performance.now();
      const status = await request(`${url}/${users[i]}/api/prompt`, {
        method: 'POST',
        headers: { ...header(i), 'content-type': 'application/json' },
        body,
      });
      if (status !== 200) throw new Error(`POST /prompt answered ${status}`);
      if (k >= 0) promptLatency.push(performance.now() - t0);
    }
    await sample();
    const round = (x: number) => Math.round(x * 100) / 100;
    return {
      [`rss_mb_${n}`]: round(rss / 1024 / 1024),
      [`prompt_p50_ms_${n}`]: round(percentile(promptLatency, 50)),
      [`prompt_p99_ms_${n}`]: round(percentile(promptLatency, 99)),
      [`jobs_p99_ms_${n}`]: round(percentile(jobsLatency, 99)),
      [`server_loop_delay_max_ms_${n}`]: round(loopMax),
    };
  } finally {
    stopped = true;
    for (const t of timers) clearInterval(t);
    for (const ws of sockets) ws.terminate();
    if (child.connected) child.send({ type: 'stop' });
    await new Promise<void>((resolve) => {
      const kill = setTimeout(() => child.kill('SIGKILL'), 10_000);
      child.once('exit', () => {
        clearTimeout(kill);
        resolve();
      });
      if (child.exitCode !== null) resolve();
    });
    await rm(dir, { recursive: true, force: true });
  }
}

export async function benchGateway(): Promise<Figures> {
  const sizes = (process.env.BENCH_GATEWAY_USERS ?? '20,100,1000')
    .split(',')
    .map((s) => Number.parseInt(s.trim(), 10))
    .filter((x) => Number.isInteger(x) && x > 0);
  const prompts = Number.parseInt(process.env.BENCH_GATEWAY_PROMPTS ?? '300', 10);
  const figures: Figures = {};
  for (const n of sizes) Object.assign(figures, await runOne(n, prompts));
  return figures;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  console.log(JSON.stringify(await benchGateway(), null, 2));
}
