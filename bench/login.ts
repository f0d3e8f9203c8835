/**
 * Login burst benchmark (issue 10): the compiled control plane in a child process (as the gateway
 * benchmark runs it), 1,000 wrong-password logins fired at once from one address, while `/health`
 * and a signed-in participant's `GET /<user>/api/queue` are requested back to back. Two bursts:
 *
 * - `one_account`: all 1,000 against one participant's name (a guesser);
 * - `spray`: 1,000 different (valid, unknown) names (a script trying names: the worst case for
 *   bcrypt work, bounded by the per-address ceiling and the bcrypt queue).
 *
 * - `baseline`: 1,000 `GET /health` at once, for comparison: what accepting 1,000 connections at
 *   once costs this server on this machine with no login involved.
 *
 * Figures per burst: `<burst>_health_p50_ms|p99|max`, `<burst>_queue_p50_ms|p99|max` (latencies
 * during the burst), `<burst>_checks` (bcrypt compares the server ran, from /metrics),
 * `<burst>_401|429|503` (answers), `<burst>_burst_ms` (until the last login was answered) and
 * `<burst>_loop_max_ms` (the server's longest event-loop stall).
 *
 * Run alone: `npm run build && npx tsx bench/login.ts` (env BENCH_LOGIN_THREADS sets
 * LOGIN_BCRYPT_THREADS, default the server's default; BENCH_LOGIN_BURST, default 1000;
 * BENCH_LOGIN_PROF=<dir> writes the server's CPU profile there).
 */
import type { ChildProcess } from 'node:child_process';
import http from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SESSION_COOKIE } from '../src/auth/sessions.js';
import { ask, forkServer } from './server-process.js';
import { participantSession } from './sessions.js';
import { percentile } from './stats.js';

type Figures = Record<string, number>;

const PARTICIPANT = 'user001';

function request(
  agent: http.Agent,
  url: string,
  opts: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: opts.method ?? 'GET', headers: opts.headers, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

async function checks(agent: http.Agent, url: string): Promise<number> {
  const { body } = await request(agent, `${url}/metrics`);
  const m = /^comfy_multi_login_password_checks_total (\d+)/m.exec(body);
  return m ? Number(m[1]) : NaN;
}

async function burst(
  child: ChildProcess,
  url: string,
  cookie: string,
  name: string,
  size: number,
  userFor: ((i: number) => string) | null,
): Promise<Figures> {
  const probeAgent = new http.Agent({ keepAlive: true, maxSockets: 2 });
  const burstAgent = new http.Agent({ keepAlive: false, maxSockets: Infinity });
  try {
    const before = await checks(probeAgent, url);
    await ask(child, 'reset');
    const health: number[] = [];
    const queue: number[] = [];
    let running = true;
    const probe = async (path: string, into: number[], headers: Record<string, string> = {}) => {
      while (running) {
        const t0 = performance.now();
        const res = await request(probeAgent, `${url}${path}`, { headers });
        into.push(performance.now() - t0);
        if (res.status !== 200) throw new Error(`${path} answered ${res.status}`);
        await new Promise((r) => setTimeout(r, 5));
      }
    };
    const probes = [
      probe('/health', health),
      probe(`/${PARTICIPANT}/api/queue`, queue, { cookie: `${SESSION_COOKIE}=${cookie}` }),
    ];
    const t0 = performance.now();
    const answers = await Promise.all(
      Array.from({ length: size }, (_, i) =>
        (userFor
          ? request(burstAgent, `${url}/login`, {
              method: 'POST',
              headers: { 'content-type': 'application/json' },
              body: JSON.stringify({ user: userFor(i), password: `wrong-${i}` }),
            })
          : request(burstAgent, `${url}/health`)
        ).then(
          (r) => r.status,
          () => 0,
        ),
      ),
    );
    const burstMs = performance.now() - t0;
    running = false;
    await Promise.all(probes);
    const loop = (await ask(child, 'rss')) as { loopMaxMs: number };
    const count = (s: number) => answers.filter((a) => a === s).length;
    const r = (v: number) => Math.round(v * 10) / 10;
    return {
      [`${name}_health_p50_ms`]: r(percentile(health, 50)),
      [`${name}_health_p99_ms`]: r(percentile(health, 99)),
      [`${name}_health_max_ms`]: r(Math.max(...health)),
      [`${name}_queue_p50_ms`]: r(percentile(queue, 50)),
      [`${name}_queue_p99_ms`]: r(percentile(queue, 99)),
      [`${name}_queue_max_ms`]: r(Math.max(...queue)),
      [`${name}_probes`]: health.length + queue.length,
      [`${name}_checks`]: (await checks(probeAgent, url)) - before,
      [`${name}_401`]: count(401),
      [`${name}_429`]: count(429),
      [`${name}_503`]: count(503),
      [`${name}_failed_requests`]: count(0),
      [`${name}_burst_ms`]: r(burstMs),
      [`${name}_loop_max_ms`]: r(loop.loopMaxMs),
    };
  } finally {
    probeAgent.destroy();
    burstAgent.destroy();
  }
}

export async function benchLogin(): Promise<Figures> {
  const dir = await mkdtemp(join(tmpdir(), 'cm-bench-login-'));
  const cookie = await participantSession(dir, PARTICIPANT, { maxPendingPerUser: 100 });
  const size = Number(process.env.BENCH_LOGIN_BURST ?? 1000);
  const child = forkServer(
    dir,
    {
      ADMIN_PASSWORD: 'bench-admin-password',
      ...(process.env.BENCH_LOGIN_THREADS ? { LOGIN_BCRYPT_THREADS: process.env.BENCH_LOGIN_THREADS } : {}),
    },
    process.env.BENCH_LOGIN_PROF,
  );
  try {
    const { url } = (await ask(child, 'ready')) as { url: string };
    // Warm up (JIT, the bcrypt worker thread) with a few logins of a name the bursts do not use.
    const warm = new http.Agent({ keepAlive: true });
    for (let i = 0; i < 3; i++) {
      await request(warm, `${url}/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ user: 'warmup', password: 'wrong' }),
      });
    }
    warm.destroy();
    const baseline = await burst(child, url, cookie, 'baseline', size, null);
    const one = await burst(child, url, cookie, 'one_account', size, () => PARTICIPANT);
    const spray = await burst(child, url, cookie, 'spray', size, (i) => `guess${i}`);
    return { ...baseline, ...one, ...spray };
  } finally {
    child.send({ type: 'stop' });
    await new Promise((r) => child.once('exit', r));
    await rm(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  console.log(JSON.stringify(await benchLogin(), null, 2));
}
