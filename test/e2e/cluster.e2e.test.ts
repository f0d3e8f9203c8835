/**
 * The proof of issue #15: three `comfy-multi serve` processes sharing only a private Redis
 * (STORE=redis) and an S3-compatible bucket (s3rver, FILES=s3), a real nginx in front (the site
 * `nginx-config` prints for 3 upstreams, no sticky sessions), two worker agents with ComfyUI
 * stand-ins connected through nginx, and 20 participants, each with a `/ws` open through nginx that
 * reconnects as the ComfyUI frontend does. 200 jobs are submitted while first every process is
 * killed with SIGKILL every few seconds and started again, and then every process is replaced one
 * at a time (a rolling upgrade: SIGTERM, start again).
 *
 * Checked, each separately so one run reports every broken promise:
 * - the rolling restart: every process exits 0 within its grace, and clients behind nginx see no
 *   failed request while it runs (POST included);
 * - GET requests never fail (nginx retries them on another process), also during the kills;
 * - every accepted job ends exactly once: completed, executed by exactly one ComfyUI once;
 * - every participant receives the events of each of their jobs (execution_start, the SaveImage
 *   node's executed, execution_success), reconnecting as a browser would, and no event of anyone
 *   else's job;
 * - no session is lost: the cookie from the first login is never refused, by nginx or by any
 *   process directly, to the end.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ClusterParticipant,
  type FailedRequest,
  type ReceivedEvent,
} from '../support/cluster-participant.js';
import { ServeCluster, sleep } from '../support/cluster.js';
import { MODEL_FREE_NODES, modelFreePrompt } from '../support/prompts.js';

const PROCESSES = 3;
const WORKERS = 2;
const USERS = 20;
const JOBS_PER_USER = 10;
/** Mean time between two "Queue" presses of one participant. */
const THINK_MS = 4000;
const KILL_EVERY_MS: [number, number] = [2500, 4000];
const KILL_PHASE_MS = 15_000;
const MIN_KILLS = 4;
const TERMINAL = new Set(['completed', 'failed', 'cancelled']);
/**
 * An event a page got again after reconnecting must have been handed at most this long before the
 * old connection closed: its cursor is written to Redis right after the send (ws-resume.ts), so
 * only a kill within that write's round trip (slow on this loaded 2-core machine) repeats it.
 */
const REPLAY_WINDOW_MS = 1000;

let dir: string;
let cluster: ServeCluster;
const participants: ClusterParticipant[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cm-e2e-cluster-'));
  cluster = new ServeCluster({
    dir,
    processes: PROCESSES,
    workers: WORKERS,
    users: USERS,
    leaseMs: 8000,
    heartbeatMs: 1000,
    graceMs: 5000,
    env: { MAX_PENDING_PER_USER: String(JOBS_PER_USER) },
  });
  try {
    await cluster.start();
    for (const [name, password] of [...cluster.passwords].sort().slice(0, USERS))
      participants.push(new ClusterParticipant(name, password, cluster.lbUrl));
    await Promise.all(participants.map((p) => p.login()));
    await Promise.all(participants.map((p) => p.connect()));
  } catch (err) {
    console.error(cluster.logs());
    throw err;
  }
}, 150_000);

afterAll(async () => {
  for (const p of participants) p.close();
  await cluster?.stop();
  if (process.env.E2E_KEEP !== '1' && dir) rmSync(dir, { recursive: true, force: true });
});

type Phase = 'before' | 'kills' | 'rolling' | 'settle';

describe('3 processes behind nginx, one Redis, one bucket', () => {
  it('keeps every job, event and session through a rolling restart and kill -9s', async () => {
    let phase: Phase = 'before';
    const windows: Record<Phase, [number, number]> = {
      before: [Date.now(), 0],
      kills: [0, 0],
      rolling: [0, 0],
      settle: [0, 0],
    };
    const enter = (p: Phase) => {
      windows[phase][1] = Date.now();
      phase = p;
      windows[p][0] = Date.now();
    };
    const jobsOf = new Map<string, Set<string>>(participants.map((p) => [p.name, new Set()]));
    const owner = new Map<string, string>();
    const submitErrors: string[] = [];
    let colour = 0x102030;

    // Participants: press "Queue" every few seconds, refresh the queue as the frontend does.
    const submitting = Promise.all(
      participants.map(async (p, i) => {
        await sleep((i * THINK_MS) / USERS);
        for (let n = 0; n < JOBS_PER_USER; n++) {
          colour += 0x010101;
          const prompt = modelFreePrompt({ color: colour & 0xffffff, filenamePrefix: `c${p.name}` });
          try {
            const r = await p.submit(prompt);
            jobsOf.get(p.name)!.add(r.id);
            owner.set(r.id, p.name);
          } catch (err) {
            submitErrors.push((err as Error).message);
          }
          await p.get('/api/queue');
          await sleep(THINK_MS * (0.5 + Math.random()));
        }
      }),
    );

    // The operator: kill -9 of a random process every few seconds (each started again at once,
    // while the next interval runs), then one rolling upgrade while participants keep submitting.
    await sleep(3000);
    enter('kills');
    const kills: number[] = [];
    const restarts: Promise<void>[] = [];
    const killsUntil = Date.now() + KILL_PHASE_MS;
    while (Date.now() < killsUntil || kills.length < MIN_KILLS) {
      await sleep(KILL_EVERY_MS[0] + Math.random() * (KILL_EVERY_MS[1] - KILL_EVERY_MS[0]));
      // One process down at a time: the promise is that any one may die, not all of them.
      await Promise.all(restarts);
      const slot = Math.floor(Math.random() * PROCESSES);
      kills.push(slot);
      await cluster.killServe(slot);
      restarts.push(cluster.startServe(slot));
    }
    await Promise.all(restarts);
    enter('rolling');
    const rollingExits: (number | null)[] = [];
    await cluster.rollingRestart((_slot, code) => rollingExits.push(code));
    await submitting;
    enter('settle');

    // Every accepted job reaches an end (or the wait runs out and the check below says which not).
    const ids = [...owner.keys()];
    const finals = new Map<string, { status: string; attempts: number } | null>();
    const until = Date.now() + 60_000;
    for (const id of ids) {
      for (;;) {
        const j = await cluster.job(id).catch(() => null);
        if (j && TERMINAL.has(j.status)) {
          finals.set(id, j);
          break;
        }
        if (Date.now() > until) {
          finals.set(id, j);
          break;
        }
        await sleep(250);
      }
    }
    // Events of the last jobs may still be on their way.
    await Promise.all(
      participants.map((p) =>
        p.waitForEvents(
          (ev) =>
            [...jobsOf.get(p.name)!].every((id) =>
              ev.some((e) => e.promptId === id && e.type === 'execution_success'),
            ),
          10_000,
        ),
      ),
    );
    windows.settle[1] = Date.now();

    const inWindow = (f: FailedRequest, w: Phase) =>
      f.at >= windows[w][0] && f.at <= (windows[w][1] || Date.now());
    const allFailures = participants.flatMap((p) => p.failures.map((f) => ({ ...f, user: p.name })));
    const summary = {
      accepted: ids.length,
      submitErrors,
      rollingExits,
      kills,
      wsConnects: participants.reduce((n, p) => n + p.wsConnects, 0),
      failuresByPhase: Object.fromEntries(
        (['before', 'kills', 'rolling', 'settle'] as Phase[]).map((w) => [
          w,
          allFailures.filter((f) => inWindow(f, w)).map((f) => `${f.what} ${f.status}`),
        ]),
      ),
      nginxStatuses: Object.fromEntries(cluster.nginxStatuses()),
    };
    console.log(`cluster e2e: ${JSON.stringify(summary, null, 1)}`);

    // 200 jobs accepted (retries of a POST that failed in transit included).
    expect.soft(submitErrors, 'submissions refused in the end').toEqual([]);
    expect.soft(ids.length).toBe(USERS * JOBS_PER_USER);

    // Rolling restart: clean exits, and no client behind nginx saw a failure meanwhile.
    expect.soft(rollingExits, 'exit codes of the rolling restart').toEqual(Array(PROCESSES).fill(0));
    expect
      .soft(
        allFailures.filter((f) => inWindow(f, 'rolling')),
        'failed requests during the rolling restart',
      )
      .toEqual([]);
    // GETs are retried by nginx on another process, even when one is killed under them.
    expect
      .soft(
        allFailures.filter((f) => f.what.startsWith('GET')),
        'failed GET requests (any phase)',
      )
      .toEqual([]);

    // Every job ends exactly once: completed, executed once by one ComfyUI.
    const notCompleted = ids
      .filter((id) => finals.get(id)?.status !== 'completed')
      .map((id) => `${id}: ${finals.get(id)?.status ?? 'not found'}`);
    expect.soft(notCompleted, 'jobs not completed').toEqual([]);
    const starts = new Map<string, number>();
    for (const r of cluster.executions()) {
      if (r.event !== 'start') continue;
      const id = (r.prefixes ?? []).map((p) => /^[^/]+\/([^/]+)\//.exec(p)?.[1]).find(Boolean);
      if (id) starts.set(id, (starts.get(id) ?? 0) + 1);
    }
    const notOnce = ids.filter((id) => starts.get(id) !== 1).map((id) => `${id}: ${starts.get(id) ?? 0}`);
    expect.soft(notOnce, 'jobs not executed exactly once').toEqual([]);

    // Every participant: every event of their own jobs, none of anyone else's.
    const missing: string[] = [];
    const twice: string[] = [];
    const replayed: string[] = [];
    const foreign: string[] = [];
    for (const p of participants) {
      const own = jobsOf.get(p.name)!;
      for (const id of own) {
        const got = p.events.filter((e) => e.promptId === id);
        const want = [
          got.some((e) => e.type === 'execution_start') ? null : 'execution_start',
          got.some((e) => e.type === 'executed' && e.node === MODEL_FREE_NODES.save) ? null : 'executed',
          got.some((e) => e.type === 'execution_success') ? null : 'execution_success',
        ].filter(Boolean);
        if (want.length) missing.push(`${p.name} ${id}: ${want.join(', ')}`);
        // The same event twice: on one connection it is a relay bug; across a reconnect it is
        // allowed only for an event handed just before the old connection's process died (its
        // cursor's write to Redis may not have landed; nothing tells the server what a page got).
        const firstSeen = new Map<string, ReceivedEvent>();
        for (const e of got) {
          if (e.type !== 'execution_success' && e.type !== 'executed') continue;
          const k = `${e.type}:${e.node ?? ''}`;
          const first = firstSeen.get(k);
          if (!first) {
            firstSeen.set(k, e);
            continue;
          }
          const closed = p.closedAt.get(first.conn);
          if (first.conn === e.conn) twice.push(`${p.name} ${id}: ${k} twice on connection ${e.conn}`);
          else if (closed === undefined || closed - first.at > REPLAY_WINDOW_MS)
            twice.push(
              `${p.name} ${id}: ${k} again on connection ${e.conn}, ${closed! - first.at} ms before it closed`,
            );
          else replayed.push(`${p.name} ${id}: ${k} (${closed - first.at} ms)`);
        }
      }
      for (const e of p.events) {
        if (!own.has(e.promptId))
          foreign.push(`${p.name} got ${e.type} of ${e.promptId} (${owner.get(e.promptId) ?? 'unknown'})`);
      }
    }
    // The agent numbers its events and sends them again to the process it reconnects to; the
    // event log keeps each once. So a kill -9 costs no event, and repeats none but those a page
    // was handed in the instant its own process died.
    expect.soft(missing, 'jobs with events missing').toEqual([]);
    expect.soft(twice, 'jobs whose ending or output a participant got twice').toEqual([]);
    if (replayed.length)
      console.info(`repeated after a reconnect (handed just before a kill): ${replayed.join('; ')}`);
    expect.soft(foreign.slice(0, 10), 'events of other participants').toEqual([]);

    // No session lost: the first cookie still works, through nginx and on every process.
    expect
      .soft(
        participants.flatMap((p) => p.sessionRefusals),
        'sessions refused',
      )
      .toEqual([]);
    const finalStatuses: string[] = [];
    for (const p of participants) {
      for (const base of [cluster.lbUrl, ...cluster.ports.map((_, i) => cluster.directUrl(i))]) {
        const res = await fetch(`${base}/${p.name}/api/queue`, { headers: { cookie: p.cookie } });
        if (res.status !== 200) finalStatuses.push(`${p.name} at ${base}: ${res.status}`);
      }
    }
    expect.soft(finalStatuses, 'the first cookie refused at the end').toEqual([]);

    if (expect.getState().assertionCalls > 0 && process.env.E2E_LOG_DIR) console.error(cluster.logs());
  }, 240_000);
});
