/**
 * Helpers for the gateway's tests (not used by the server): a control plane with a real SQLite
 * store in a temp folder, an uploaded environment snapshot, and a "fake worker" that claims,
 * reports events and completes jobs through the same services a real worker agent drives.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { join, relative } from 'node:path';
import { expect } from 'vitest';
import { WebSocket } from 'ws';
import { saveEnv, setCurrentEnv } from '../../src/dispatch/env-snapshots.js';
import { OutputNamer } from '../../src/dispatch/output-names.js';
import { userFileKey } from '../../src/files/safe-path.js';
import { crc32 } from '../../src/gateway/zip.js';
import type { Job, JobOutput } from '../../src/store/types.js';
import type { EnvSnapshot } from '../../src/worker/protocol.js';
import { startHarness, type Harness } from './app-harness.js';

export { startHarness, type Harness };

const OBJECT_INFO_URL = new URL('./comfyui-standin/vendored/object_info.v0.3.64.json', import.meta.url);

let objectInfoCache: Record<string, unknown> | null = null;
export function recordedObjectInfo(): Record<string, unknown> {
  objectInfoCache ??= JSON.parse(readFileSync(OBJECT_INFO_URL, 'utf8')) as Record<string, unknown>;
  return objectInfoCache;
}

export function testSnapshot(): EnvSnapshot {
  return {
    comfyuiVersion: '0.3.64',
    objectInfo: recordedObjectInfo(),
    embeddings: ['easynegative'],
    models: { checkpoints: ['sd15.safetensors'], loras: [], configs: ['v1.yaml'], custom_nodes: [] },
    extensions: ['/extensions/core/example.js'],
    systemStats: {
      system: {
        os: 'posix',
        ram_total: 1,
        ram_free: 1,
        comfyui_version: '0.3.64',
        python_version: '3.11',
        pytorch_version: '2',
        embedded_python: false,
        argv: ['main.py'],
      },
      devices: [
        {
          name: 'cuda:0 Test GPU',
          type: 'cuda',
          index: 0,
          vram_total: 1,
          vram_free: 1,
          torch_vram_total: 1,
          torch_vram_free: 1,
        },
      ],
    },
  };
}

/** Stores a worker environment snapshot as the current one (what a worker's `env` message does). */
export async function uploadEnv(h: Harness, snapshot: EnvSnapshot = testSnapshot()): Promise<void> {
  const hash = createHash('sha256').update(JSON.stringify(snapshot)).digest('hex');
  await saveEnv(h.services.store, hash, snapshot);
  await setCurrentEnv(h.services.store, { hash, workerId: 'test-worker', at: Date.now() });
}

/** The password {@link startParticipantSite} gives participant `user001`. */
export const PARTICIPANT_PASSWORD = 'pw-user001-0123456789';

/**
 * What a participant's browser test starts from: a harness (with `env`) with participant
 * `user001`, a worker's environment snapshot, listening on a port at `base`.
 */
export async function startParticipantSite(
  env: Record<string, string> = {},
): Promise<{ h: Harness; base: string }> {
  const h = await startHarness(env);
  await h.services.accounts.create('user001', 'participant', PARTICIPANT_PASSWORD);
  await uploadEnv(h);
  return { h, base: await listen(h) };
}

/** A valid 1×1 RGBA PNG; a non-zero seed appends bytes after IEND so the hash differs. */
export function tinyPng(seed = 0): Buffer {
  const base = Buffer.from(
    '89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d49444154789c63304e9bf91f00043402325b2d0ae00000000049454e44ae426082',
    'hex',
  );
  if (seed === 0) return base;
  return Buffer.concat([base, Buffer.from(`#${seed}`)]);
}

/** Publishes ComfyUI-shaped events of `job` on the bus, as the fake worker's. */
export function fakeWorkerEvents(h: Harness, job: Job) {
  return (type: string, data: Record<string, unknown>) =>
    h.services.bus.publish({
      kind: 'event',
      jobId: job.id,
      user: job.user,
      workerId: 'fake-worker',
      event: { type, data },
    });
}

/**
 * Stores a file the fake worker saved for `job` as the real agent and dispatcher do: ComfyUI saves
 * under `<user>/<jobId>/<subfolder>`; the file is stored, announced and recorded under the
 * participant-facing name (ComfyUI's own naming), which this returns with the stored size.
 */
export async function storeWorkerOutput(
  h: Harness,
  job: Job,
  file: { filename: string; subfolder?: string; body: Buffer },
): Promise<{ filename: string; subfolder: string; size: number }> {
  const { files, store } = h.services;
  const subfolder = [job.user, job.id, file.subfolder ?? ''].filter((s) => s !== '').join('/');
  const workerSide = { filename: file.filename, subfolder, type: 'output' as const };
  const [facing] = await new OutputNamer(store, files).name(job.user, job.id, [workerSide]);
  const stat = await files.write(
    userFileKey(job.user, 'output', facing!.subfolder, facing!.filename),
    file.body,
  );
  return { filename: facing!.filename, subfolder: facing!.subfolder, size: stat.size };
}

/**
 * Plays a GPU worker for one job: claims it (it must be the next one), relays ComfyUI-shaped events
 * on the bus, writes an output file into the owner's space, and completes it.
 */
export async function runJobAsWorker(
  h: Harness,
  opts: {
    filename?: string;
    events?: boolean;
    preview?: Buffer;
    progressSteps?: number;
    holdMs?: number;
  } = {},
): Promise<Job> {
  const { queue, bus } = h.services;
  const job = await queue.claim('fake-worker', []);
  if (!job) throw new Error('no job to claim');
  const filename = opts.filename ?? 'ComfyUI_00001_.png';
  const publish = fakeWorkerEvents(h, job);
  const save = Object.entries(job.prompt).find(([, n]) => n.class_type === 'SaveImage')?.[0] ?? '3';
  if (opts.events !== false) {
    publish('execution_start', { prompt_id: job.id, timestamp: Date.now() });
    publish('execution_cached', { nodes: [], prompt_id: job.id, timestamp: Date.now() });
    publish('executing', { node: save, display_node: save, prompt_id: job.id });
    const steps = opts.progressSteps ?? 3;
    for (let i = 1; i <= steps; i++)
      publish('progress', { value: i, max: steps, prompt_id: job.id, node: save });
    if (opts.preview)
      bus.publish({
        kind: 'preview',
        jobId: job.id,
        user: job.user,
        workerId: 'fake-worker',
        preview: opts.preview,
      });
    if (opts.holdMs) await new Promise((r) => setTimeout(r, opts.holdMs));
  }
  const saved = await storeWorkerOutput(h, job, { filename, body: tinyPng() });
  const output: JobOutput = { nodeId: save, ...saved, type: 'output', kind: 'images' };
  if (opts.events !== false) {
    publish('executed', {
      node: save,
      display_node: save,
      output: { images: [{ filename: output.filename, subfolder: output.subfolder, type: 'output' }] },
      prompt_id: job.id,
    });
    publish('execution_success', { prompt_id: job.id, timestamp: Date.now() });
  }
  const r = await queue.complete(job.id, job.attempts, [output]);
  if (!r.ok) throw new Error(`complete failed: ${r.reason}`);
  if (opts.events !== false) publish('executing', { node: null, prompt_id: job.id });
  return r.job;
}

/**
 * Every file the harness's local file store holds, relative to its root (`<user>/<type>/…`),
 * sorted: what tests compare before and after a request to see that nothing was written outside
 * the user's space or left staged.
 */
export async function storedFiles(h: Harness): Promise<string[]> {
  const root = join(h.dataDir, 'files');
  const out: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
      const full = join(dir, e.name);
      if (e.isDirectory()) await walk(full);
      else out.push(relative(root, full));
    }
  };
  await walk(root);
  return out.sort();
}

/** Listens on a random local port (for WebSocket clients) and returns its base URL. */
export async function listen(h: Harness): Promise<string> {
  await h.app.listen({ port: 0, host: '127.0.0.1' });
  const addr = h.app.server.address() as AddressInfo;
  return `http://127.0.0.1:${addr.port}`;
}

/** A WebSocket client that records every message; text frames parsed, binary kept as Buffers. */
export class RecordingSocket {
  readonly messages: ({ type: string; data: unknown } | Buffer)[] = [];
  private waiters: (() => void)[] = [];

  constructor(readonly ws: WebSocket) {
    ws.on('message', (data, isBinary) => {
      const buf = Array.isArray(data)
        ? Buffer.concat(data)
        : Buffer.isBuffer(data)
          ? data
          : Buffer.from(data);
      this.messages.push(
        isBinary ? buf : (JSON.parse(buf.toString('utf8')) as { type: string; data: unknown }),
      );
      for (const w of this.waiters.splice(0)) w();
    });
  }

  static async open(url: string, headers: Record<string, string>): Promise<RecordingSocket> {
    const ws = new WebSocket(url, { headers });
    const rec = new RecordingSocket(ws);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
      ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
    });
    return rec;
  }

  texts(): { type: string; data: Record<string, unknown> }[] {
    return this.messages.filter(
      (m): m is { type: string; data: Record<string, unknown> } => !Buffer.isBuffer(m),
    );
  }

  binaries(): Buffer[] {
    return this.messages.filter((m): m is Buffer => Buffer.isBuffer(m));
  }

  async waitFor(pred: (r: RecordingSocket) => boolean, timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!pred(this)) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out; got ${JSON.stringify(this.texts().map((m) => m.type))}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 100));
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  close(): void {
    this.ws.close();
  }
}

/** A multipart/form-data body with text fields and an optional file part. */
export function multipart(
  fields: Record<string, string>,
  file?: { name: string; body: Buffer; field?: string },
) {
  const boundary = '----cmtest' + Math.random().toString(16).slice(2);
  const parts: Buffer[] = [];
  for (const [k, v] of Object.entries(fields)) {
    parts.push(Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${k}"\r\n\r\n${v}\r\n`));
  }
  if (file) {
    parts.push(
      Buffer.from(
        `--${boundary}\r\nContent-Disposition: form-data; name="${file.field ?? 'image'}"; filename="${file.name}"\r\nContent-Type: image/png\r\n\r\n`,
      ),
      file.body,
      Buffer.from('\r\n'),
    );
  }
  parts.push(Buffer.from(`--${boundary}--\r\n`));
  return { payload: Buffer.concat(parts), contentType: `multipart/form-data; boundary=${boundary}` };
}

/** POSTs a multipart form like the ComfyUI frontend's uploads. */
export async function upload(
  app: Harness['app'],
  auth: string,
  url: string,
  fields: Record<string, string>,
  file?: { name: string; body: Buffer; field?: string },
) {
  const m = multipart(fields, file);
  return app.inject({
    method: 'POST',
    url,
    headers: { authorization: auth, 'content-type': m.contentType },
    payload: m.payload,
  });
}

/** Reads a ZIP through its central directory and checks every entry's CRC. */
export function readZip(zip: Buffer): { name: string; data: Buffer }[] {
  const eocd = zip.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
  expect(eocd).toBeGreaterThan(-1);
  const count = zip.readUInt16LE(eocd + 10);
  let p = zip.readUInt32LE(eocd + 16);
  const out: { name: string; data: Buffer }[] = [];
  for (let i = 0; i < count; i++) {
    expect(zip.readUInt32LE(p)).toBe(0x02014b50);
    expect(zip.readUInt16LE(p + 10)).toBe(0); // stored
    const crc = zip.readUInt32LE(p + 16);
    const size = zip.readUInt32LE(p + 20);
    const nameLen = zip.readUInt16LE(p + 28);
    const local = zip.readUInt32LE(p + 42);
    const name = zip.subarray(p + 46, p + 46 + nameLen).toString('utf8');
    expect(zip.readUInt32LE(local)).toBe(0x04034b50);
    const localNameLen = zip.readUInt16LE(local + 26);
    const start = local + 30 + localNameLen + zip.readUInt16LE(local + 28);
    const data = zip.subarray(start, start + size);
    expect(crc32(data)).toBe(crc);
    expect(zip.readUInt32LE(start + size)).toBe(0x08074b50);
    out.push({ name, data });
    p += 46 + nameLen;
  }
  return out;
}
