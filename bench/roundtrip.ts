/**
 * Round-trip benchmark: submit → completion → output bytes in hand, the model-free prompt
 * (EmptyImage → ImageInvert → SaveImage), paired A/B against the very ComfyUI the worker drives:
 *
 * - **direct**: the client talks to that ComfyUI itself (`POST /prompt`, `/history`, `/view`);
 * - **through**: the same client talks to comfy-multi (`/<user>/api/...`): the control plane in a
 *   child process (compiled dist/, as production runs it), the real worker agent in a worker
 *   thread of this process, driving the same ComfyUI.
 *
 * Two client styles, each measured as alternating pairs (direct, through, direct, ...):
 *
 * - `ws`: waits on `/ws` for the first of `execution_success` / `executing {node: null}`, then
 *   fetches with `/view` every output the `executed` messages named (as ComfyUI's own websocket
 *   example script does);
 * - `poll`: polls `/history/<id>` every 5 ms until the entry is there, then fetches the outputs.
 *
 * Printed: median and p90 of both sides and of the per-pair difference (through − direct).
 * ComfyUI is the stand-in (in a worker thread) unless COMFYUI_URL names a real one.
 * Run alone: `npx tsx bench/roundtrip.ts` after `npm run build` (env BENCH_ROUNDTRIP_PAIRS,
 * default 60; BENCH_ROUNDTRIP_WARMUP, default 5; BENCH_ROUNDTRIP_STYLES, default `ws,poll`).
 */
import { fork } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Worker } from 'node:worker_threads';
import { WebSocket } from 'ws';
import { SESSION_COOKIE } from '../src/auth/sessions.js';
import { modelFreePrompt } from '../test/support/prompts.js';
import { nextMessage, tsWorker } from './dispatch-threads.js';
import { ask } from './server-process.js';
import { participantSession } from './sessions.js';
import { median, percentile } from './stats.js';

type Figures = Record<string, number>;

const POLL_MS = 5;
const USER = 'user001';
const keepAlive = new http.Agent({ keepAlive: true, maxSockets: 16 });

interface Reply {
  status: number;
  body: Buffer;
}

/** One HTTP request over a keep-alive connection; resolves once the whole body is in hand. */
function request(
  url: string,
  opts: { method?: string; headers?: Record<string, string>; body?: string } = {},
) {
  return new Promise<Reply>((resolve, reject) => {
    const req = http.request(
      url,
      { method: opts.method ?? 'GET', headers: opts.headers, agent: keepAlive },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** One side of the A/B: where its ComfyUI API lives and how to reach it. */
interface Side {
  name: 'direct' | 'through';
  /** Base of the ComfyUI API: `http://comfy` or `http://cp/user001/api`. */
  api: string;
  /** The `/ws` URL without the query. */
  ws: string;
  headers: Record<string, string>;
  clientId: string;
  socket: WebSocket | null;
  /** prompt id → resolve, and prompt ids whose end already arrived. */
  waiters: Map<string, () => void>;
  ended: Set<string>;
  /** Outputs named by `executed`, by prompt id. */
  outputs: Map<string, FileRef[]>;
  /** BENCH_DEBUG: ComfyUI's own clock (ms) at `execution_start` and `execution_success`, by prompt id. */
  stamps: Map<string, { start?: number; success?: number }>;
}

interface FileRef {
  filename: string;
  subfolder: string;
  type: string;
}

function openSocket(side: Side): Promise<void> {
  return new Promise((resolve, reject) => {
    // Uncompressed, as ComfyUI's own example script (websocket-client) connects: ComfyUI agrees to
    // permessage-deflate with a client that offers it, the control plane does not, so an offering
    // client would pay for inflating on the direct side only. BENCH_WS_DEFLATE=1 offers it (as a
    // browser does) on both sides.
    const ws = new WebSocket(`${side.ws}?clientId=${side.clientId}`, {
      headers: side.headers,
      perMessageDeflate: process.env.BENCH_WS_DEFLATE === '1',
    });
    ws.on('open', () => resolve());
    ws.on('error', reject);
    ws.on('message', (data, isBinary) => {
      if (isBinary) return;
      const m = JSON.parse(String(data)) as {
        type: string;
        data?: { prompt_id?: string; node?: unknown; output?: { images?: FileRef[] }; timestamp?: number };
      };
      const pid = m.data?.prompt_id;
      if (typeof pid !== 'string') return;
      if (process.env.BENCH_DEBUG && typeof m.data?.timestamp === 'number') {
        let st = side.stamps.get(pid);
        if (!st) side.stamps.set(pid, (st = {}));
        if (m.type === 'execution_start') st.start = m.data.timestamp;
        if (m.type === 'execution_success') st.success = m.data.timestamp;
      }
      if (m.type === 'executed') {
        let list = side.outputs.get(pid);
        if (!list) side.outputs.set(pid, (list = []));
        list.push(...(m.data?.output?.images ?? []));
      }
      if (m.type === 'execution_success' || (m.type === 'executing' && m.data?.node === null)) {
        if (side.ended.has(pid)) return;
        side.ended.add(pid);
        side.waiters.get(pid)?.();
      }
    });
    side.socket = ws;
  });
}

let color = 0x102030;
async function submit(side: Side): Promise<string> {
  // A fresh color each time, so ComfyUI's cache never short-cuts a run.
  color = (color + 0x010307) & 0xffffff;
  // The direct client saves into a folder of its own per job, as the agent has ComfyUI do
  // (`<user>/<job>/`): ComfyUI lists the folder to number the file, and a folder holding every
  // earlier run's images made the direct side slower with every run (3 ms at 3,000 files).
  const filenamePrefix = side.name === 'direct' ? `bench-direct/${randomUUID()}/ci` : 'ci';
  const body = JSON.stringify({
    prompt: modelFreePrompt({ color, filenamePrefix }),
    client_id: side.clientId,
  });
  const r = await request(`${side.api}/prompt`, {
    method: 'POST',
    headers: { ...side.headers, 'content-type': 'application/json' },
    body,
  });
  if (r.status !== 200) throw new Error(`${side.name}: POST /prompt answered ${r.status}: ${r.body}`);
  return (JSON.parse(String(r.body)) as { prompt_id: string }).prompt_id;
}

type Entry = { outputs?: Record<string, { images?: FileRef[] }> };

async function history(side: Side, id: string): Promise<Entry | null> {
  const r = await request(`${side.api}/history/${id}`, { headers: side.headers });
  if (r.status !== 200) throw new Error(`${side.name}: /history answered ${r.status}`);
  return (JSON.parse(String(r.body)) as Record<string, Entry>)[id] ?? null;
}

/** Every output's bytes; the figure is meaningless if one is missing, so that throws. */
async function fetchOutputs(side: Side, files: FileRef[]): Promise<number> {
  let bytes = 0;
  for (const img of files) {
    const q = new URLSearchParams({ filename: img.filename, subfolder: img.subfolder, type: img.type });
    const r = await request(`${side.api}/view?${q.toString()}`, { headers: side.headers });
    if (r.status !== 200 || r.body.length === 0) throw new Error(`${side.name}: /view answered ${r.status}`);
    bytes += r.body.length;
  }
  if (bytes === 0) throw new Error(`${side.name}: no output named`);
  return bytes;
}

const filesOf = (entry: Entry): FileRef[] =>
  Object.values(entry.outputs ?? {}).flatMap((n) => n.images ?? []);

/**
 * BENCH_DEBUG: when (ms after submitting) each side's `POST /prompt` answered and it knew the job
 * ended; and from ComfyUI's own timestamps (its clock is this machine's, in whole ms) when ComfyUI
 * started the prompt, how long it ran it, and how long after its `execution_success` the client
 * knew the job had ended.
 */
const phases: Record<string, number[]> = {};
const mark = (name: string, v: number) => (phases[name] ??= []).push(v);

async function roundTrip(side: Side, style: 'ws' | 'poll'): Promise<number> {
  const t0 = performance.now();
  const wall0 = Date.now();
  const id = await submit(side);
  if (process.env.BENCH_DEBUG) mark(`${side.name}.${style}.posted`, performance.now() - t0);
  let files: FileRef[];
  if (style === 'ws') {
    if (!side.ended.has(id)) await new Promise<void>((r) => side.waiters.set(id, r));
    side.waiters.delete(id);
    if (process.env.BENCH_DEBUG) mark(`${side.name}.${style}.ended`, performance.now() - t0);
    files = side.outputs.get(id) ?? [];
    side.outputs.delete(id);
  } else {
    let entry: Entry | null;
    while (!(entry = await history(side, id))) await new Promise((r) => setTimeout(r, POLL_MS));
    if (process.env.BENCH_DEBUG) mark(`${side.name}.${style}.ended`, performance.now() - t0);
    files = filesOf(entry);
  }
  const st = side.stamps.get(id);
  side.stamps.delete(id);
  if (process.env.BENCH_DEBUG && st?.start !== undefined && st.success !== undefined) {
    mark(`${side.name}.${style}.comfy_started`, st.start - wall0);
    mark(`${side.name}.${style}.comfy_ran`, st.success - st.start);
    mark(`${side.name}.${style}.known_after_success`, Date.now() - st.success);
  }
  await fetchOutputs(side, files);
  return performance.now() - t0;
}

/** BENCH_ROUNDTRIP_STYLES: `ws`, `poll` or both (the default), comma-separated. */
function styles(): ('ws' | 'poll')[] {
  const asked = (process.env.BENCH_ROUNDTRIP_STYLES ?? 'ws,poll').split(',').map((s) => s.trim());
  const known = asked.filter((s): s is 'ws' | 'poll' => s === 'ws' || s === 'poll');
  if (known.length === 0) throw new Error('BENCH_ROUNDTRIP_STYLES: name ws, poll or both');
  return known;
}

const round = (n: number) => Math.round(n * 10) / 10;

async function pairs(direct: Side, through: Side, style: 'ws' | 'poll', n: number, warm: number) {
  const a: number[] = [];
  const b: number[] = [];
  for (let i = 0; i < warm + n; i++) {
    // Alternate which side goes first, so neither always runs on a freshly idle machine.
    const first = i % 2 === 0 ? direct : through;
    const second = first === direct ? through : direct;
    const t1 = await roundTrip(first, style);
    const t2 = await roundTrip(second, style);
    if (i < warm) continue;
    a.push(first === direct ? t1 : t2);
    b.push(first === direct ? t2 : t1);
  }
  const diff = b.map((v, i) => v - a[i]!);
  const f: Figures = {};
  f[`${style}_direct_median_ms`] = round(median(a));
  f[`${style}_direct_p90_ms`] = round(percentile(a, 90));
  f[`${style}_through_median_ms`] = round(median(b));
  f[`${style}_through_p90_ms`] = round(percentile(b, 90));
  f[`${style}_overhead_median_ms`] = round(median(diff));
  f[`${style}_overhead_p90_ms`] = round(percentile(diff, 90));
  return f;
}

async function until(fn: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await fn())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function benchRoundtrip(): Promise<Figures> {
  const n = Number(process.env.BENCH_ROUNDTRIP_PAIRS ?? 60);
  const warm = Number(process.env.BENCH_ROUNDTRIP_WARMUP ?? 5);
  const dir = await mkdtemp(join(tmpdir(), 'cm-bench-rt-'));
  let standin: Worker | null = null;
  let agent: Worker | null = null;
  const sides: Side[] = [];
  const cookie = await participantSession(dir, USER, { maxPendingPerUser: 1000 });
  const token = 'bench-roundtrip-worker-token';
  const child = fork(fileURLToPath(new URL('./gateway-server.mjs', import.meta.url)), [], {
    // BENCH_CPU_PROF=<dir>: a CPU profile of the control plane, written there when it stops.
    execArgv: process.env.BENCH_CPU_PROF
      ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`]
      : [],
    env: {
      ...process.env,
      DATA_DIR: dir,
      HOST: '127.0.0.1',
      PORT: '0',
      LOG_LEVEL: 'silent',
      ADMIN_PASSWORD: 'bench-admin-password',
      WORKER_TOKENS: `bench:${token}`,
      HISTORY_RETENTION_DAYS: '0',
    },
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  });
  try {
    let comfyuiUrl = process.env.COMFYUI_URL?.replace(/\/+$/, '');
    // The agent reads outputs from ComfyUI's output folder, as one beside ComfyUI is set up to
    // (`--output-dir`): the stand-in's own, or BENCH_COMFYUI_OUTPUT_DIR for a real ComfyUI.
    let outputDir = process.env.BENCH_COMFYUI_OUTPUT_DIR || undefined;
    if (!comfyuiUrl) {
      standin = tsWorker('./dispatch-standin-thread.ts', { delayMs: 0 });
      const ready = await nextMessage(
        standin,
        (m): m is { kind: 'ready'; url: string; outputDir: string } =>
          (m as { kind?: string }).kind === 'ready',
      );
      comfyuiUrl = ready.url;
      outputDir = ready.outputDir;
    }
    if (process.env.BENCH_VIA_VIEW === '1') outputDir = undefined;
    const { url } = (await ask(child, 'ready')) as { url: string };
    agent = tsWorker('./dispatch-agent-thread.ts', {
      serverUrl: url,
      token,
      comfyuiUrl,
      prefetch: 1,
      ...(outputDir ? { outputDir } : {}),
    });
    const headers = { cookie: `${SESSION_COOKIE}=${cookie}` };
    // Registered, and its ComfyUI environment uploaded (prompts are validated against it).
    await until(
      async () => (await request(`${url}/${USER}/api/object_info/SaveImage`, { headers })).status === 200,
      60_000,
      'the agent to register',
    );
    const side = (name: Side['name'], api: string, ws: string, h: Record<string, string>): Side => ({
      name,
      api,
      ws,
      headers: h,
      clientId: randomUUID().replace(/-/g, ''),
      socket: null,
      waiters: new Map(),
      ended: new Set(),
      outputs: new Map(),
      stamps: new Map(),
    });
    const direct = side('direct', comfyuiUrl, `${comfyuiUrl.replace(/^http/, 'ws')}/ws`, {});
    const through = side(
      'through',
      `${url}/${USER}/api`,
      `${url.replace(/^http/, 'ws')}/${USER}/ws`,
      headers,
    );
    sides.push(direct, through);
    await openSocket(direct);
    await openSocket(through);
    const f: Figures = { pairs: n, real_comfyui: process.env.COMFYUI_URL ? 1 : 0 };
    for (const style of styles()) Object.assign(f, await pairs(direct, through, style, n, warm));
    if (process.env.BENCH_DEBUG)
      for (const [k, v] of Object.entries(phases)) console.log(k, round(median(v)), round(percentile(v, 90)));
    return f;
  } finally {
    for (const s of sides) s.socket?.close();
    if (agent) {
      agent.postMessage('stop');
      await nextMessage(agent, (m): m is 'stopped' => m === 'stopped', 10_000).catch(() => undefined);
      await agent.terminate();
    }
    if (child.exitCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.send({ type: 'stop' });
      await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
      child.kill();
    }
    if (standin) {
      standin.postMessage('close');
      await nextMessage(standin, (m): m is 'closed' => m === 'closed', 5000).catch(() => undefined);
      await standin.terminate();
    }
    keepAlive.destroy();
    await rm(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(JSON.stringify(await benchRoundtrip(), null, 2));
  process.exit(0);
}
