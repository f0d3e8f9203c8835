/**
 * Helpers for the stand-in's own tests: fixture loading, a recording WebSocket client, HTTP
 * shortcuts and the normalisation that lets a stand-in answer be compared with a recorded one
 * (ids, timestamps and random file-name parts replaced by placeholders).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PNG } from 'pngjs';
import WebSocket from 'ws';
import { COMFY_FIXTURES } from '../fixtures.js';
import { startStandin, type Standin, type StandinOptions } from './server.js';

/** Runs `fn` against a fresh in-process stand-in, closed afterwards whatever happens. */
export async function withStandin(
  fn: (s: Standin) => Promise<void>,
  opts: StandinOptions = {},
): Promise<void> {
  const standin = await startStandin(opts);
  try {
    await fn(standin);
  } finally {
    await standin.close();
  }
}

/**
 * Runs the stand-in's CLI (`npm run standin`) with `args` in a child process: `url` resolves once
 * it says where it listens (rejects if it exits first). The caller kills `child`.
 */
export function spawnStandinCli(args: string[]): {
  child: ChildProcess;
  url: Promise<string>;
  exited: Promise<number | null>;
} {
  const main = fileURLToPath(new URL('./main.ts', import.meta.url));
  const tsx = fileURLToPath(new URL('../../../node_modules/.bin/tsx', import.meta.url));
  const child = spawn(tsx, [main, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const url = new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) resolve(m[1]!);
    });
    child.on('exit', () => reject(new Error(`exited early: ${out}`)));
  });
  // A test that fails before awaiting `url` must not leave an unhandled rejection behind.
  url.catch(() => {});
  return { child, url, exited };
}

/** Where the recorded ComfyUI fixtures live (see test/support/fixtures.ts). */
export function fixturesDir(): string {
  return COMFY_FIXTURES;
}

// The fixtures are free-form JSON: tests navigate them as `any` on purpose.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Json = any;

export function fixture(name: string): Json {
  return JSON.parse(readFileSync(join(fixturesDir(), name), 'utf8'));
}

export type WsMessage = { kind: 'text'; type: string; data: Json } | { kind: 'binary'; bytes: Buffer };

/** A WebSocket client that records every frame, like the fixture recorder did. */
export class RecordingClient {
  readonly messages: WsMessage[] = [];
  closed = false;

  private constructor(
    readonly ws: WebSocket,
    readonly clientId: string,
  ) {
    ws.on('message', (raw: Buffer, isBinary) => {
      if (isBinary) this.messages.push({ kind: 'binary', bytes: Buffer.from(raw) });
      else {
        const msg = JSON.parse(raw.toString());
        this.messages.push({ kind: 'text', type: msg.type, data: msg.data });
      }
    });
    ws.on('close', () => (this.closed = true));
    ws.on('error', () => undefined);
  }

  /** Connects and waits for the initial `status` (and the `feature_flags` reply if flags are sent). */
  static async connect(
    wsUrl: string,
    clientId: string,
    featureFlags?: Record<string, unknown>,
    opts: { compress?: boolean } = {},
  ): Promise<RecordingClient> {
    // Uncompressed unless asked, as the agent connects: inflating happens on the thread pool, so a
    // compressed message may still be on its way when the stand-in is idle or its socket drops.
    const ws = new WebSocket(`${wsUrl}?clientId=${clientId}`, { perMessageDeflate: opts.compress === true });
    const client = new RecordingClient(ws, clientId);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    if (featureFlags) ws.send(JSON.stringify({ type: 'feature_flags', data: featureFlags }));
    await client.waitFor((m) => m.some((x) => x.kind === 'text' && x.type === 'status'));
    if (featureFlags)
      await client.waitFor((m) => m.some((x) => x.kind === 'text' && x.type === 'feature_flags'));
    return client;
  }

  /** The extensions the stand-in agreed to (`permessage-deflate` or ''). */
  get extensions(): string {
    return this.ws.extensions;
  }

  async waitFor(pred: (messages: WsMessage[]) => boolean, timeoutMs = 15_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!pred(this.messages)) {
      if (Date.now() > deadline) throw new Error(`timeout; got: ${types(this.messages).join(', ')}`);
      await sleep(10);
    }
  }

  /** Waits for `executing {node: null}` of the prompt (the very last message of a run). */
  waitForEnd(promptId: string, timeoutMs?: number): Promise<void> {
    return this.waitFor(
      (m) =>
        m.some(
          (x) =>
            x.kind === 'text' &&
            x.type === 'executing' &&
            x.data.node === null &&
            x.data.prompt_id === promptId,
        ),
      timeoutMs,
    );
  }

  text(type?: string): Array<{ type: string; data: Json }> {
    return this.messages.flatMap((m) =>
      m.kind === 'text' && (type === undefined || m.type === type) ? [{ type: m.type, data: m.data }] : [],
    );
  }

  binary(): Buffer[] {
    return this.messages.flatMap((m) => (m.kind === 'binary' ? [m.bytes] : []));
  }

  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      this.ws.once('close', () => resolve());
      this.ws.close();
    });
  }
}

/** `status`, `executing`, … and `binary:<event type>` for binary frames. */
export function types(messages: WsMessage[]): string[] {
  return messages.map((m) => (m.kind === 'text' ? m.type : `binary:${m.bytes.readUInt32BE(0)}`));
}

/** The same list for a recorded transcript. */
export function transcriptTypes(messages: Json[]): string[] {
  return messages.map((m) => (m.kind === 'text' ? m.data.type : `binary:${m.data.event_type}`));
}

export interface HttpResult {
  status: number;
  headers: Headers;
  text: string;
  json: Json;
  bytes: Buffer;
}

export async function http(url: string, init?: RequestInit): Promise<HttpResult> {
  const res = await fetch(url, init);
  const bytes = Buffer.from(await res.arrayBuffer());
  const text = bytes.toString('utf8');
  let json: Json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json, bytes };
}

export function postJson(url: string, body: unknown): Promise<HttpResult> {
  return http(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
}

/**
 * Replaces machine-specific values so recorded and live answers can be compared: the given
 * strings (prompt/client ids) by their placeholder, `timestamp` values by 0, PreviewImage's
 * random temp prefix, tracebacks by a marker and absolute input paths by `<input>`.
 */
export function normalize(value: Json, replace: Record<string, string> = {}): Json {
  if (typeof value === 'string') {
    let s = value;
    for (const [from, to] of Object.entries(replace)) s = s.split(from).join(to);
    return s
      .replace(/ComfyUI_temp_[a-z]{5}_/g, 'ComfyUI_temp_XXXXX_')
      .replace(/'\/[^']*\/input\//g, "'<input>/");
  }
  if (Array.isArray(value)) return value.map((v) => normalize(v, replace));
  if (value && typeof value === 'object') {
    const out: Json = {};
    for (const [k, v] of Object.entries(value)) {
      const key = normalize(k, replace);
      if (k === 'timestamp') out[key] = 0;
      else if (k === 'traceback' && Array.isArray(v)) out[key] = '<traceback>';
      else out[key] = normalize(v, replace);
    }
    return out;
  }
  return value;
}

/** Types instead of values, keys kept: `{a: 1, b: ['x']}` → `{a: 'number', b: ['string']}`. */
export function shapeOf(value: Json): Json {
  if (value === null) return 'null';
  if (Array.isArray(value)) return value.map(shapeOf);
  if (typeof value === 'object')
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, shapeOf(v)]));
  return typeof value;
}

export function readPng(bytes: Buffer): {
  width: number;
  height: number;
  pixel(x: number, y: number): number[];
} {
  const png = PNG.sync.read(bytes);
  return {
    width: png.width,
    height: png.height,
    pixel: (x, y) => [...png.data.subarray((y * png.width + x) * 4, (y * png.width + x) * 4 + 4)],
  };
}

/** An RGB PNG filled with one colour, for uploads. */
export function makePng(width: number, height: number, rgb: [number, number, number]): Buffer {
  const png = new PNG({ width, height });
  for (let i = 0; i < width * height; i++) png.data.set([...rgb, 255], i * 4);
  return PNG.sync.write(png, { colorType: 2 });
}

export function uploadForm(fields: Record<string, string>, file?: { name: string; bytes: Buffer }): FormData {
  const form = new FormData();
  if (file) form.append('image', new Blob([file.bytes], { type: 'image/png' }), file.name);
  for (const [k, v] of Object.entries(fields)) form.append(k, v);
  return form;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
