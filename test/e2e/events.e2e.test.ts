/**
 * Every ComfyUI event of a job reaches its owner's `/ws`, in ComfyUI's order, exactly once: the
 * real control plane (in process), the real worker agent, and the ComfyUI stand-in — or, with
 * `COMFYUI_URL`, a real ComfyUI (the soak variant; EVENTS_JOBS sets the number of jobs, default
 * 500). What "ComfyUI sent" is what arrived on the agent's own ComfyUI socket, recorded by a
 * ComfyClient that only listens in.
 *
 * The owner's sequence for a job is its text messages naming the job (`status` messages are ours,
 * documented, and left out); ComfyUI's is every text message naming the prompt, with the prompt
 * id replaced by the job id and output subfolders by where the owner's files are (as documented
 * in docs/ARCHITECTURE.md). They must be equal.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { loadConfig } from '../../src/config/load-config.js';
import { startServer, type RunningServer } from '../../src/main.js';
import { isTerminal } from '../../src/store/types.js';
import type { WorkerAgent } from '../../src/worker/agent/agent.js';
import { startStandin, type Standin } from '../support/comfyui-standin/server.js';
import { MODEL_FREE_NODES, modelFreePrompt, type ApiPrompt } from '../support/prompts.js';
import { waitFor } from '../support/processes.js';
import {
  RecordingComfyClient,
  asOwnerSees,
  startRecordingAgent,
  withoutFileNames,
  type Event,
} from '../support/comfy-events.js';

const REAL_COMFYUI = process.env.COMFYUI_URL?.replace(/\/+$/, '') || null;
const JOBS = Number(process.env.EVENTS_JOBS ?? 500);
const USER = 'user001';
const TOKEN = 'events-worker-token';

let dataDir: string;
let server: RunningServer;
let standin: Standin | null = null;
let comfy: RecordingComfyClient;
let agent: WorkerAgent;
let auth: string;
let owner: { ws: WebSocket; texts: Event[] };
/** `/view` of every file an `executed` named, asked the moment it arrived: the status answered. */
const viewedOnArrival: Promise<{ file: string; status: number }>[] = [];

async function post(path: string, body: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${server.url}/${USER}/api${path}`, {
    method: 'POST',
    headers: { authorization: auth, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, json: (text ? JSON.parse(text) : {}) as Record<string, unknown> };
}

async function submit(prompt: ApiPrompt): Promise<string> {
  const r = await post('/prompt', { prompt, client_id: 'tab1' });
  expect(r.status, JSON.stringify(r.json)).toBe(200);
  return r.json.prompt_id as string;
}

/**
 * ComfyUI's prompt ids in the order it started them. One participant's jobs run one after the
 * other in submit order on the one worker, so the n-th is the n-th job (checked against the
 * output folder `<user>/<job id>/` where there is one).
 */
function promptsInStartOrder(): string[] {
  return [...comfy.sent.entries()]
    .filter(([, events]) => events.some((e) => e.type === 'execution_start'))
    .map(([pid]) => pid);
}

/** A prompt whose output is text, not a file: its job has nothing to upload. */
function textOutputPrompt(color: number): ApiPrompt {
  return {
    '1': { class_type: 'EmptyImage', inputs: { width: 8, height: 8, batch_size: 1, color } },
    '2': { class_type: 'PreviewAny', inputs: { source: ['1', 0] } },
  };
}

function ownerSequence(jobId: string): Event[] {
  return owner.texts.filter((m) => m.type !== 'status' && m.data?.prompt_id === jobId);
}

async function allEnded(ids: string[], timeoutMs: number): Promise<void> {
  await waitFor(
    async () => {
      for (const id of ids) {
        const job = await server.services.store.getJob(id);
        if (!job || !isTerminal(job.status)) return false;
        if (!ownerSequence(id).some((e) => e.type === 'executing' && e.data.node === null)) return false;
      }
      return true;
    },
    timeoutMs,
    'every job to end on the owner socket',
  );
}

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'cm-events-'));
  let comfyuiUrl = REAL_COMFYUI;
  if (!comfyuiUrl) {
    standin = await startStandin({ delayMs: 300 });
    comfyuiUrl = standin.url;
  }
  server = await startServer(
    loadConfig({
      HOST: '127.0.0.1',
      PORT: '0',
      DATA_DIR: dataDir,
      LOG_LEVEL: 'silent',
      ADMIN_PASSWORD: 'events-admin-password',
      WORKER_TOKENS: `events:${TOKEN}`,
      MAX_PENDING_PER_USER: '100000',
      HISTORY_RETENTION_DAYS: '0',
    }),
    { print: () => {} },
  );
  ({ agent, comfy } = startRecordingAgent({ serverUrl: server.url, token: TOKEN, comfyuiUrl: comfyuiUrl }));
  await waitFor(
    () => server.services.workers.list().some((w) => w.status === 'idle'),
    60_000,
    'the agent to register',
  );
  const password = 'pw-events-0123456789';
  await server.services.accounts.create(USER, 'participant', password);
  auth = `Basic ${Buffer.from(`${USER}:${password}`).toString('base64')}`;
  const ws = new WebSocket(`${server.url.replace(/^http/, 'ws')}/${USER}/ws?clientId=tab1`, {
    headers: { authorization: auth },
  });
  const texts: Event[] = [];
  ws.on('message', (data, isBinary) => {
    if (isBinary) return;
    const m = JSON.parse(String(data)) as Event;
    texts.push(m);
    // Announced means downloadable: `/view` never waits, so a file not stored yet would be a 404.
    const images = (m.data?.output as { images?: { filename: string; subfolder: string; type: string }[] })
      ?.images;
    if (m.type !== 'executed' || !images) return;
    for (const f of images) {
      const q = new URLSearchParams({ filename: f.filename, subfolder: f.subfolder, type: f.type });
      viewedOnArrival.push(
        fetch(`${server.url}/${USER}/api/view?${q.toString()}`, { headers: { authorization: auth } }).then(
          async (r) => {
            await r.arrayBuffer();
            return { file: `${f.subfolder}/${f.filename}`, status: r.status };
          },
        ),
      );
    }
  });
  await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
  owner = { ws, texts };
}, 120_000);

afterAll(async () => {
  owner?.ws.close();
  await agent?.stop();
  await server?.close();
  await standin?.close();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

describe("the owner's /ws gets every ComfyUI event of a job, in order, exactly once", () => {
  it(
    `${JOBS} back-to-back jobs${REAL_COMFYUI ? ' on a real ComfyUI' : ''}`,
    async () => {
      const ids: string[] = [];
      // Queued at once, so each job's end and the next one's start overlap at the agent. Every
      // fifth has no file to upload: its outcome is ready the moment ComfyUI's verdict arrives,
      // before ComfyUI's final `executing` (which the agent used to drop).
      for (let i = 0; i < JOBS; i++) {
        const color = (i * 7919) & 0xffffff;
        ids.push(await submit(i % 5 === 4 ? textOutputPrompt(color) : modelFreePrompt({ color })));
      }
      await allEnded(ids, 60_000 + JOBS * 400);
      const prompts = promptsInStartOrder();
      expect(prompts.length).toBe(ids.length);
      for (const [i, id] of ids.entries()) {
        const job = (await server.services.store.getJob(id))!;
        expect(job.status, id).toBe('completed');
        const raw = comfy.sent.get(prompts[i]!)!;
        if (i % 5 !== 4) expect(JSON.stringify(raw)).toContain(`"subfolder":"${USER}/${id}`);
        const sent = raw.map((e) => asOwnerSees(e, id));
        expect(ownerSequence(id).map(withoutFileNames), `events of job ${id}`).toEqual(sent);
        // ComfyUI's own last word, not one made up by the control plane.
        expect(sent.at(-1)).toEqual({ type: 'executing', data: { node: null, prompt_id: id } });
      }
      const views = await Promise.all(viewedOnArrival);
      expect(views.length).toBeGreaterThanOrEqual(JOBS - Math.ceil(JOBS / 5));
      expect(views.filter((v) => v.status !== 200)).toEqual([]);
    },
    (120 + JOBS * 0.5) * 1000,
  );

  it.skipIf(REAL_COMFYUI)(
    "a cancelled running job ends with ComfyUI's own execution_interrupted, once ComfyUI has stopped",
    async () => {
      const ids: string[] = [];
      for (let i = 0; i < 5; i++) {
        const id = await submit(
          modelFreePrompt({ color: 0x123456 + i, sleep: { seconds: 1.5, steps: 6, seed: i } }),
        );
        ids.push(id);
        // Cancel while the slow node runs.
        await waitFor(
          () => ownerSequence(id).some((e) => e.type === 'progress'),
          30_000,
          `progress of ${id}`,
        );
        const r = await post('/interrupt', { prompt_id: id });
        expect(r.status).toBe(200);
        await allEnded([id], 30_000);
      }
      // These prompts save nothing: mapped by ComfyUI's start order, which is the submit order.
      const interrupted = promptsInStartOrder().filter((pid) =>
        comfy.sent.get(pid)!.some((e) => e.type === 'execution_interrupted'),
      );
      expect(interrupted.length).toBe(ids.length);
      for (const [i, id] of ids.entries()) {
        expect((await server.services.store.getJob(id))!.status).toBe('cancelled');
        const sent = comfy.sent.get(interrupted[i]!)!.map((e) => asOwnerSees(e, id));
        const seen = ownerSequence(id);
        expect(seen, `events of job ${id}`).toEqual(sent);
        const end = seen.filter((e) => e.type === 'execution_interrupted');
        expect(end.length).toBe(1);
        // ComfyUI's node: the slow one it was running, not a guess.
        expect(end[0]!.data.node_id).toBe(MODEL_FREE_NODES.sleep);
      }
    },
    120_000,
  );
});
