/**
 * `npm run bench -- cluster`: several control-plane processes behind nginx under a big room.
 * Three `serve` processes on one private Redis (STORE=redis) and s3rver (FILES=s3), a real nginx
 * with the site `nginx-config` prints for 3 upstreams, two worker agents with ComfyUI stand-ins
 * (test/support/cluster.ts), and 1,000 participants (test/support/cluster-participant.ts), each
 * with its `/ws` open through nginx and submitting one prompt, paced over the run. Figures:
 *
 * - `rss_mb_p<i>`: each process's largest resident memory during the run, and `rss_mb_max`;
 *   `rss_mb_idle_max`: the largest before any participant connected;
 * - `prompt_p50_ms` / `prompt_p99_ms`: `POST /<user>/api/prompt` round trips through nginx;
 * - `event_p50_ms` / `event_p99_ms`: event delivery from the worker to the participant's socket:
 *   the stand-in recording that it starts executing a prompt (its `execution_start` goes to the
 *   agent at that moment) to the owner's socket receiving that `execution_start`;
 * - `events_delivered_pct`: of the jobs that started, how many owners got their `execution_start`
 *   (below 100 while events do not cross processes: the owner's socket and the worker's may sit
 *   on different processes);
 * - `jobs_started`: jobs executed within the run (the rest is still queued when it ends).
 *
 * Accounts and session cookies are put straight into the shared Redis (one bcrypt hash, cookies
 * minted with the store's key, as a login would), so no bcrypt runs while measuring. Runs dist/
 * when built (`npm run bench` builds first), src/ through tsx otherwise.
 * Alone: `npx tsx bench/run.ts cluster` (env BENCH_CLUSTER_USERS, default 1000;
 * BENCH_CLUSTER_SUBMIT_PER_S, default 20; BENCH_CLUSTER_WAIT_S, default 90).
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { hashPassword } from '../src/auth/passwords.js';
import { SESSION_COOKIE, SessionSigner } from '../src/auth/sessions.js';
import { loadConfig } from '../src/config/load-config.js';
import { openStore } from '../src/store/index.js';
import { ClusterParticipant } from '../test/support/cluster-participant.js';
import { ServeCluster, sleep } from '../test/support/cluster.js';
import { modelFreePrompt } from '../test/support/prompts.js';
import { percentile } from './stats.js';

type Figures = Record<string, number>;

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));
const PROCESSES = 3;
const round = (n: number) => Math.round(n * 10) / 10;

/** Accounts in the shared store and their session cookies (`cm_session=…`). */
async function sessions(cluster: ServeCluster, users: string[]): Promise<string[]> {
  const store = await openStore(loadConfig({ ...cluster.env(0), LOG_LEVEL: 'silent' }));
  try {
    const passwordHash = await hashPassword('bench-password-0123456789');
    const createdAt = Date.now();
    for (const name of users)
      await store.putAccount({ name, role: 'participant', passwordHash, createdAt, passwordVersion: 1 });
    const signer = await SessionSigner.open(store);
    const e = Math.floor(Date.now() / 1000) + 3600;
    return users.map(
      (u) => `${SESSION_COOKIE}=${signer.sign({ u, v: 1, e, s: SessionSigner.newId(), c: createdAt })}`,
    );
  } finally {
    await store.close();
  }
}

export async function benchCluster(): Promise<Figures> {
  const userCount = Number(process.env.BENCH_CLUSTER_USERS ?? 1000);
  const perSecond = Number(process.env.BENCH_CLUSTER_SUBMIT_PER_S ?? 20);
  const waitS = Number(process.env.BENCH_CLUSTER_WAIT_S ?? 90);
  const dir = mkdtempSync(join(tmpdir(), 'cm-bench-cluster-'));
  const cluster = new ServeCluster({
    dir,
    processes: PROCESSES,
    workers: 2,
    users: 0,
    compiled: existsSync(join(ROOT, 'dist/cli/index.js')),
    nginxConnections: Math.max(1024, userCount * 3),
    leaseMs: 30_000,
    heartbeatMs: 2000,
    env: { MAX_PENDING_PER_USER: '10' },
  });
  const participants: ClusterParticipant[] = [];
  const rss: number[][] = Array.from({ length: PROCESSES }, () => []);
  let sampler: NodeJS.Timeout | undefined;
  try {
    await cluster.start();
    const names = Array.from({ length: userCount }, (_, i) => `bench${String(i + 1).padStart(4, '0')}`);
    const cookies = await sessions(cluster, names);
    // Before any participant: what the processes cost on their own (S3 client, Redis, workers).
    const idle = Array.from({ length: PROCESSES }, (_, i) => cluster.rssMb(i) ?? 0);
    sampler = setInterval(() => {
      for (let i = 0; i < PROCESSES; i++) {
        const mb = cluster.rssMb(i);
        if (mb !== null) rss[i]!.push(mb);
      }
    }, 500);
    names.forEach((name, i) => {
      const p = new ClusterParticipant(name, '', cluster.lbUrl);
      p.cookie = cookies[i]!;
      participants.push(p);
    });
    // Open the sockets 50 at a time, as a room arriving.
    for (let i = 0; i < participants.length; i += 50)
      await Promise.all(participants.slice(i, i + 50).map((p) => p.connect()));

    // Everybody presses "Queue" once, paced at `perSecond`.
    const promptMs: number[] = [];
    const owner = new Map<string, ClusterParticipant>();
    let colour = 0x204060;
    const submissions: Promise<void>[] = [];
    for (const p of participants) {
      colour = (colour + 0x010203) & 0xffffff;
      const prompt = modelFreePrompt({ color: colour, filenamePrefix: `b${p.name}` });
      submissions.push(
        (async () => {
          const t0 = performance.now();
          const r = await p.submit(prompt, 1).catch(() => null);
          if (!r) return;
          promptMs.push(performance.now() - t0);
          owner.set(r.id, p);
        })(),
      );
      await sleep(1000 / perSecond);
    }
    await Promise.all(submissions);

    // Until every job started and its owner heard of it, or the wait is over.
    const startedAt = (): Map<string, number> => {
      const out = new Map<string, number>();
      for (const r of cluster.executions()) {
        if (r.event !== 'start') continue;
        const id = (r.prefixes ?? []).map((x) => /^[^/]+\/([^/]+)\//.exec(x)?.[1]).find(Boolean);
        if (id && !out.has(id)) out.set(id, r.at);
      }
      return out;
    };
    const heard = (id: string) =>
      owner.get(id)?.events.find((e) => e.promptId === id && e.type === 'execution_start');
    const until = Date.now() + waitS * 1000;
    while (Date.now() < until) {
      const started = startedAt();
      if (started.size >= owner.size && [...started.keys()].every((id) => heard(id))) break;
      await sleep(1000);
    }
    const started = startedAt();
    const eventMs: number[] = [];
    for (const [id, at] of started) {
      const e = heard(id);
      if (e) eventMs.push(e.at - at);
    }
    const rssMax = rss.map((s) => (s.length ? Math.max(...s) : 0));
    return {
      participants: participants.length,
      ws_open: participants.filter((p) => p.wsConnects > 0).length,
      ...Object.fromEntries(rssMax.map((mb, i) => [`rss_mb_p${i}`, round(mb)])),
      rss_mb_max: round(Math.max(...rssMax)),
      rss_mb_idle_max: round(Math.max(...idle)),
      prompts_accepted: owner.size,
      prompt_p50_ms: round(percentile(promptMs, 50)),
      prompt_p99_ms: round(percentile(promptMs, 99)),
      jobs_started: started.size,
      events_delivered_pct: started.size ? round((100 * eventMs.length) / started.size) : 0,
      event_p50_ms: round(percentile(eventMs, 50)),
      event_p99_ms: round(percentile(eventMs, 99)),
    };
  } finally {
    clearInterval(sampler);
    for (const p of participants) p.close();
    await cluster.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
