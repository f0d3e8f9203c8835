/**
 * Test helpers for the worker hub: a real control plane (SQLite store, real HTTP server on a free
 * port) and a scripted worker agent speaking the protocol over a real `ws` client. Used by the
 * dispatch, admin, cluster, http, autoscale and end-to-end tests; nothing here is shipped behaviour.
 */
import { request as httpRequest } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import WebSocket from 'ws';
import { buildApp } from '../../src/app.js';
import { loadConfig } from '../../src/config/load-config.js';
import type { Config } from '../../src/config/schema.js';
import { createServices, type ServiceOptions, type Services } from '../../src/services.js';
import { defaultSettings } from '../../src/store/index.js';
import { openSqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import type { JobStore } from '../../src/store/types.js';
import {
  PROTOCOL_VERSION,
  serverMessage,
  type AgentMessage,
  type ServerMessage,
} from '../../src/worker/protocol.js';

export const API_TOKEN = 'test-api-token-0123456789';
export const ENV_WORKER_TOKEN = 'env-worker-token-0123456789';
export const PROMPT = {
  '1': { class_type: 'EmptyImage', inputs: { width: 64, height: 64, batch_size: 1, color: 0 } },
};

export interface ControlPlane {
  dir: string;
  config: Config;
  store: JobStore;
  services: Services;
  app: FastifyInstance;
  /** `http://127.0.0.1:<port>` */
  url: string;
  wsUrl: string;
  /** Creates a stored worker token and returns it. */
  token(name: string): Promise<string>;
  close(): Promise<void>;
}

export async function startControlPlane(
  env: Record<string, string> = {},
  opts: {
    openStore?: (config: Config) => Promise<JobStore>;
    /** E.g. `{ cluster: hub.join('A') }` to play one of several processes sharing a store. */
    services?: ServiceOptions;
  } = {},
): Promise<ControlPlane> {
  const dir = mkdtempSync(join(tmpdir(), 'cm-dispatch-'));
  const config = loadConfig({
    DATA_DIR: dir,
    LOG_LEVEL: 'silent',
    API_TOKENS: `tests:${API_TOKEN}`,
    WORKER_TOKENS: `envgpu:${ENV_WORKER_TOKEN}`,
    MAX_RUNNING_PER_USER: '100',
    ...env,
  });
  const store = opts.openStore
    ? await opts.openStore(config)
    : await openSqliteStore({ path: join(dir, 'state.db'), defaults: defaultSettings(config) });
  const services = await createServices(config, store, pino({ level: 'silent' }), opts.services);
  const app = await buildApp(services);
  await app.listen({ port: 0, host: '127.0.0.1' });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  const url = `http://127.0.0.1:${port}`;
  let closed = false;
  return {
    dir,
    config,
    store,
    services,
    app,
    url,
    wsUrl: `ws://127.0.0.1:${port}/worker/v1/ws`,
    token: async (name) => (await services.workerTokens.create(name)).token,
    close: async () => {
      if (closed) return;
      closed = true;
      await app.close();
      services.queue.stop();
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

type Hello = Extract<AgentMessage, { type: 'hello' }>;
type Welcome = Extract<ServerMessage, { type: 'welcome' }>;

export function helloMessage(overrides: Partial<Hello> = {}): Hello {
  return {
    type: 'hello',
    protocol: PROTOCOL_VERSION,
    name: 'gpu1',
    agentVersion: 'test',
    comfyuiVersion: '0.3.64',
    devices: [{ name: 'cuda:0 Test GPU', type: 'cuda', vramTotal: 80e9, vramFree: 60e9 }],
    envHash: 'a'.repeat(64),
    prefetch: 1,
    inFlight: [],
    warmModels: [],
    healthy: true,
    ...overrides,
  };
}

/** A scripted worker agent: raw protocol over a real WebSocket, with an inbox to await messages from. */
export class TestAgent {
  readonly inbox: ServerMessage[] = [];
  readonly invalid: unknown[] = [];
  private waiters: { match: (m: ServerMessage) => boolean; resolve: (m: ServerMessage) => void }[] = [];
  closeCode: number | null = null;
  readonly closed: Promise<number>;
  workerId = '';
  private beat: NodeJS.Timeout | undefined;

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data, isBinary) => {
      if (isBinary) return;
      const parsed = serverMessage.safeParse(JSON.parse(data.toString()));
      if (!parsed.success) {
        this.invalid.push(data.toString());
        return;
      }
      const msg = parsed.data;
      const i = this.waiters.findIndex((w) => w.match(msg));
      if (i >= 0) this.waiters.splice(i, 1)[0]!.resolve(msg);
      else this.inbox.push(msg);
    });
    this.closed = new Promise((resolve) =>
      ws.on('close', (code) => {
        this.closeCode = code;
        clearInterval(this.beat);
        resolve(code);
      }),
    );
    ws.on('error', () => {});
  }

  static async connect(wsUrl: string, token: string): Promise<TestAgent> {
    const ws = new WebSocket(wsUrl, { headers: { authorization: `Bearer ${token}` } });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
      ws.once('error', reject);
    });
    return new TestAgent(ws);
  }

  /** Connects and says hello; resolves with the welcome. */
  static async register(
    wsUrl: string,
    token: string,
    hello: Partial<Hello> = {},
  ): Promise<{ agent: TestAgent; welcome: Welcome }> {
    const agent = await TestAgent.connect(wsUrl, token);
    agent.send(helloMessage(hello));
    const welcome = await agent.next('welcome');
    agent.workerId = welcome.workerId;
    return { agent, welcome };
  }

  send(msg: AgentMessage): void {
    this.ws.send(JSON.stringify(msg));
  }

  sendRaw(data: string | Buffer, binary = false): void {
    this.ws.send(data, { binary });
  }

  /** Sends heartbeats every `ms` with the given in-flight list until closed. */
  heartbeatEvery(
    ms: number,
    inFlight: () => Extract<AgentMessage, { type: 'heartbeat' }>['inFlight'] = () => [],
  ): void {
    clearInterval(this.beat);
    this.beat = setInterval(() => {
      if (this.ws.readyState === WebSocket.OPEN)
        this.send({ type: 'heartbeat', healthy: true, devices: [], inFlight: inFlight() });
    }, ms);
  }

  /** The next message of this type (already received or still to come). */
  next<T extends ServerMessage['type']>(
    type: T,
    predicate: (m: Extract<ServerMessage, { type: T }>) => boolean = () => true,
    timeoutMs = 3000,
  ): Promise<Extract<ServerMessage, { type: T }>> {
    type M = Extract<ServerMessage, { type: T }>;
    const match = (m: ServerMessage): boolean => m.type === type && predicate(m as M);
    const i = this.inbox.findIndex(match);
    if (i >= 0) return Promise.resolve(this.inbox.splice(i, 1)[0] as M);
    return new Promise<M>((resolve, reject) => {
      const waiter = {
        match,
        resolve: (m: ServerMessage) => {
          clearTimeout(timer);
          resolve(m as M);
        },
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(
          new Error(
            `no ${type} message within ${timeoutMs} ms; inbox: ${JSON.stringify(this.inbox.map((m) => m.type))}`,
          ),
        );
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }

  /** Resolves true when no message of this type arrives within `ms`. */
  async none(type: ServerMessage['type'], ms = 200): Promise<boolean> {
    await sleep(ms);
    return !this.inbox.some((m) => m.type === type);
  }

  async close(): Promise<void> {
    clearInterval(this.beat);
    if (this.ws.readyState === WebSocket.CLOSED) return;
    if (this.ws.readyState === WebSocket.OPEN) this.ws.close(1000);
    else this.ws.terminate();
    const t = setTimeout(() => this.ws.terminate(), 1000);
    await this.closed;
    clearTimeout(t);
  }

  terminate(): Promise<number> {
    clearInterval(this.beat);
    this.ws.terminate();
    return this.closed;
  }
}

/** What an upgrade attempt got when it was refused: status and JSON body. */
export function refusedUpgrade(
  wsUrl: string,
  headers: Record<string, string>,
): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(wsUrl, { headers });
    ws.on('error', () => {});
    ws.on('open', () => {
      ws.terminate();
      reject(new Error('the upgrade was accepted'));
    });
    ws.on('unexpected-response', (req, res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => {
        req.destroy();
        resolve({ status: res.statusCode ?? 0, body: body ? JSON.parse(body) : null });
      });
    });
  });
}

/** A raw HTTP request (no URL normalisation, so `..` reaches the server as sent). */
export function rawRequest(
  base: string,
  method: string,
  path: string,
  opts: { headers?: Record<string, string>; body?: Buffer | string } = {},
): Promise<{ status: number; body: Buffer; json: () => unknown }> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { host: u.hostname, port: u.port, method, path, headers: { ...opts.headers, connection: 'close' } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const body = Buffer.concat(chunks);
          resolve({ status: res.statusCode ?? 0, body, json: () => JSON.parse(body.toString()) });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(opts.body);
  });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls a condition (tests only) until it holds or the time is up. */
export async function until(
  cond: () => boolean | Promise<boolean>,
  timeoutMs = 3000,
  what = 'condition',
): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/**
 * One test's control plane, agents and clean-ups, for test files that start a fresh control plane
 * per test: call `reset()` in `afterEach`. The methods are bound, so they can be destructured.
 */
export class HubTestBed {
  private current: ControlPlane | undefined;
  readonly agents: TestAgent[] = [];
  /** Run before the agents and the control plane are closed. */
  readonly cleanups: (() => void)[] = [];

  /** The running control plane (after `start()`). */
  get cp(): ControlPlane {
    if (!this.current) throw new Error('no control plane: call start() first');
    return this.current;
  }

  start = async (env: Record<string, string> = {}): Promise<ControlPlane> => {
    this.current = await startControlPlane(env);
    return this.current;
  };

  /** Registers an agent that `reset()` closes. */
  agent = async (token: string, hello: Parameters<typeof TestAgent.register>[2] = {}) => {
    const r = await TestAgent.register(this.cp.wsUrl, token, hello);
    this.agents.push(r.agent);
    return r;
  };

  /** The control plane's HTTP API as an instructor (`API_TOKEN`). */
  api = (path: string, init: RequestInit = {}): Promise<Response> =>
    fetch(`${this.cp.url}${path}`, {
      ...init,
      headers: { authorization: `Bearer ${API_TOKEN}`, ...init.headers },
    });

  reset = async (): Promise<void> => {
    for (const c of this.cleanups.splice(0)) c();
    for (const a of this.agents.splice(0)) await a.close();
    await this.current?.close();
    this.current = undefined;
  };
}
