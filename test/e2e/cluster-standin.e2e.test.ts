/**
 * Two control planes sharing one Redis and one bucket (s3rver), as two replicas behind a load
 * balancer: the real worker agent and the ComfyUI stand-in on process A; the participant submits
 * and watches on process B. Every ComfyUI event of each job reaches the owner's `/ws` on B in
 * ComfyUI's order, exactly once, equal to what the stand-in sent (as test/e2e/events.e2e.test.ts
 * checks with one process); another participant on B gets none of them.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import WebSocket from 'ws';
import { loadConfig } from '../../src/config/load-config.js';
import { startServer, type RunningServer } from '../../src/main.js';
import { isTerminal } from '../../src/store/types.js';
import type { WorkerAgent } from '../../src/worker/agent/agent.js';
import { startStandin, type Standin } from '../support/comfyui-standin/server.js';
import {
  RecordingComfyClient,
  asOwnerSees,
  startRecordingAgent,
  withoutFileNames,
  type Event,
} from '../support/comfy-events.js';
import { modelFreePrompt } from '../support/prompts.js';
import { waitFor } from '../support/processes.js';
import { startS3Server, type S3ServerHandle } from '../support/s3-server.js';
import { setProcessEnv } from '../support/process-env.js';

const JOBS = 30;
const TOKEN = 'cluster-events-worker-token';
const redisUrl = inject('redisUrl');

let s3: S3ServerHandle;
let restoreEnv: (() => void) | undefined;
const dirs: string[] = [];
let a: RunningServer;
let b: RunningServer;
let standin: Standin;
let comfy: RecordingComfyClient;
let agent: WorkerAgent;
const sockets: WebSocket[] = [];

const basic = (user: string) => `Basic ${Buffer.from(`${user}:pw-${user}-0123456789`).toString('base64')}`;

async function socket(server: RunningServer, user: string, clientId: string): Promise<Event[]> {
  const ws = new WebSocket(`${server.url.replace(/^http/, 'ws')}/${user}/ws?clientId=${clientId}`, {
    headers: { authorization: basic(user) },
  });
  sockets.push(ws);
  const texts: Event[] = [];
  ws.on('message', (data, isBinary) => {
    if (!isBinary) texts.push(JSON.parse(String(data)) as Event);
  });
  await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
  return texts;
}

beforeAll(async () => {
  s3 = await startS3Server({ buckets: ['files'] });
  restoreEnv = setProcessEnv(s3.env);
  const prefix = `test:cluster-standin:${process.pid}:${randomUUID()}:`;
  const start = async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cm-cluster-standin-'));
    dirs.push(dir);
    return startServer(
      loadConfig({
        HOST: '127.0.0.1',
        PORT: '0',
        DATA_DIR: dir,
        LOG_LEVEL: 'silent',
        ADMIN_PASSWORD: 'cluster-admin-password',
        WORKER_TOKENS: `events:${TOKEN}`,
        MAX_PENDING_PER_USER: '1000',
        STORE: 'redis',
        REDIS_URL: redisUrl,
        REDIS_PREFIX: prefix,
        FILES: 's3',
        S3_BUCKET: 'files',
        S3_PREFIX: `${prefix.replace(/:/g, '-')}/`,
        S3_ENDPOINT: s3.endpoint,
        S3_REGION: 'us-east-1',
        S3_FORCE_PATH_STYLE: 'true',
      }),
      { print: () => {} },
    );
  };
  a = await start();
  b = await start();
  standin = await startStandin({ delayMs: 100 });
  ({ agent, comfy } = startRecordingAgent({ serverUrl: a.url, token: TOKEN, comfyuiUrl: standin.url }));
  await waitFor(() => a.services.workers.list().some((w) => w.status === 'idle'), 60_000, 'the agent');
  for (const user of ['user001', 'user002'])
    await a.services.accounts.create(user, 'participant', `pw-${user}-0123456789`);
}, 120_000);

afterAll(async () => {
  for (const ws of sockets) ws.close();
  await agent?.stop();
  await b?.close();
  await a?.close();
  await standin?.close();
  restoreEnv?.();
  await s3?.stop();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

describe('two processes: worker on A, participant on B', () => {
  it("the owner's /ws on B gets every ComfyUI event of each job, as the stand-in sent it, once", async () => {
    const owner = await socket(b, 'user001', 'tab1');
    const other = await socket(b, 'user002', 'tab2');
    const sequence = (texts: Event[], id: string) =>
      texts.filter((m) => m.type !== 'status' && m.data?.prompt_id === id);
    const ids: string[] = [];
    for (let i = 0; i < JOBS; i++) {
      const res = await fetch(`${b.url}/user001/api/prompt`, {
        method: 'POST',
        headers: { authorization: basic('user001'), 'content-type': 'application/json' },
        body: JSON.stringify({
          prompt: modelFreePrompt({ color: (i * 7919) & 0xffffff }),
          client_id: 'tab1',
        }),
      });
      expect(res.status, await res.clone().text()).toBe(200);
      ids.push(((await res.json()) as { prompt_id: string }).prompt_id);
    }
    await waitFor(
      async () => {
        for (const id of ids) {
          const job = await b.services.store.getJob(id);
          if (!job || !isTerminal(job.status)) return false;
          if (!sequence(owner, id).some((e) => e.type === 'executing' && e.data.node === null)) return false;
        }
        return true;
      },
      120_000,
      'every job to end on the owner socket on B',
    );
    // One participant's jobs run in submit order on the one worker: the n-th started prompt is the
    // n-th job.
    const prompts = [...comfy.sent.entries()]
      .filter(([, events]) => events.some((e) => e.type === 'execution_start'))
      .map(([pid]) => pid);
    expect(prompts.length).toBe(JOBS);
    for (const [i, id] of ids.entries()) {
      expect((await b.services.store.getJob(id))!.status).toBe('completed');
      const sent = comfy.sent.get(prompts[i]!)!.map((e) => asOwnerSees(e, id));
      expect(sequence(owner, id).map(withoutFileNames), `events of job ${id}`).toEqual(sent);
      expect(sent.at(-1)).toEqual({ type: 'executing', data: { node: null, prompt_id: id } });
      expect(sequence(other, id)).toEqual([]);
    }
    expect(other.every((m) => m.type === 'status')).toBe(true);
  }, 240_000);
});
