/**
 * The ComfyUI v0.3.64 stand-in for tests: `startStandin()` starts an HTTP + WebSocket server on
 * 127.0.0.1 that answers like the recorded ComfyUI (see shared/fixtures/comfyui-v0.3.64 beside the checkout)
 * and really runs model-free graphs. This file only wires things together and owns the
 * listening socket (which the crash/unreachable faults take away and give back).
 */
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync, existsSync, type Dirent } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { extname, join, relative, resolve, sep } from 'node:path';
import { WebSocketServer } from 'ws';
import { ExecutionLog, type ExecutionRecord } from './exec-log.js';
import { FaultController, type FaultControls, type UnreachableMode } from './faults.js';
import { Router, reply, requestCtx, send } from './http-util.js';
import { encodeRgbPng, solidImage } from './image.js';
import { Instance } from './instance.js';
import { customNodeDefs } from './media-nodes.js';
import './model-nodes.js';
import { NodeCatalog } from './object-info.js';
import { addComfyRoutes, MODEL_FOLDERS } from './routes-comfy.js';
import { addControlRoutes } from './routes-control.js';
import { addFileRoutes } from './routes-files.js';
import { StaticSite } from './static-files.js';
import { STANDIN_TEMPLATES_VERSION, standinTemplateLibrary } from './template-library.js';
import type { DataDirs, HistoryEntry, QueueItem } from './types.js';

export type { FaultControls, FaultSnapshot, ExecutionErrorFault, UnreachableMode } from './faults.js';
export type { ApiPrompt, DataDirs, HistoryEntry, QueueItem } from './types.js';
export type { ExecutionOutcome, ExecutionRecord } from './exec-log.js';

export interface StandinOptions {
  /** Default 0 (a free port). */
  port?: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** Root for `input/`, `output/`, `temp/`. Default: a fresh temp dir, removed by `close()`. */
  dir?: string;
  /** StandinSleep duration when its `seconds` input is omitted. Default 1000. */
  delayMs?: number;
  /** Model files per folder (`{checkpoints: ['sd15.safetensors']}`) for `/models/{folder}` and loader combos. */
  models?: Record<string, string[]>;
  /**
   * ComfyUI's models folder (`/internal/folder_paths`, and `dirs.models`: LoRAs are listed from its
   * `loras/`). Default `<dir>/models`. When given, `/models/{folder}` and the loader combos also
   * list its model files (ComfyUI's extensions only), re-read on every such request like ComfyUI's
   * folder_paths cache does when a folder changes. Added to `models`.
   */
  modelsDir?: string;
  /** Put a stock-like `example.png` into the input dir (ComfyUI ships one). Default true. */
  seedExampleImage?: boolean;
  /** Called after a simulated crash (the CLI exits the process here). */
  onCrash?: () => void;
  /**
   * A built ComfyUI web frontend (a folder with index.html): `GET /` serves its index.html and any
   * other GET no API route answers is served from it, like ComfyUI's `web.static('/', web_root)`.
   * Default: none (`GET /` answers a one-line stand-in page, other paths 404).
   */
  frontendRoot?: string;
  /**
   * Custom nodes' web folders by node name, served at `/extensions/<name>/…`; `GET /extensions`
   * then lists their `.js` files (and those under `<frontendRoot>/extensions/`). Default: none.
   */
  extensionDirs?: Record<string, string>;
  /**
   * Append every execution's start and end (JSON lines, see exec-log.ts) to this file, written
   * synchronously so a killed process loses nothing. Default: none (kept in memory only).
   */
  executionLog?: string;
  /**
   * Also offer the recorded custom nodes (VHS_VideoCombine, see media-nodes.ts) in object_info.
   * Default false: the recorded ComfyUI ran without custom nodes.
   */
  customNodes?: boolean;
  /**
   * Serve a small `comfyui-workflow-templates` library at `/templates/` (see template-library.ts),
   * as ComfyUI does when the package is installed; system_stats then reports its version.
   * Default false: the recorded ComfyUI had no template package.
   */
  templates?: boolean;
}

export interface StandinState {
  /** Listening and not crashed. */
  readonly alive: boolean;
  readonly crashed: boolean;
  readonly queueRemaining: number;
  readonly running: QueueItem[];
  readonly pending: QueueItem[];
  readonly history: Record<string, HistoryEntry>;
  /** Client ids with a registered WebSocket. */
  readonly clientIds: string[];
  /** The next prompt `number`. */
  readonly promptNumber: number;
  /**
   * Every prompt that started executing since the stand-in started (across simulated restarts,
   * oldest first, the last 10,000): its id and the `filename_prefix` inputs of its nodes. Tests
   * count how often a job really ran (not part of ComfyUI).
   */
  readonly executions: StandinExecution[];
}

export interface StandinExecution {
  promptId: string;
  filenamePrefixes: string[];
  startedAt: number;
}

/** One HTTP request the stand-in received (not counting its own `/standin/*` control routes). */
export interface StandinRequest {
  method: string;
  /** The path as requested, without the query string. */
  path: string;
}

export interface Standin {
  readonly url: string;
  readonly wsUrl: string;
  readonly host: string;
  readonly port: number;
  readonly dirs: DataDirs;
  readonly faults: FaultControls;
  readonly state: StandinState;
  /** The last 10,000 HTTP requests, oldest first; `clearRequests()` empties the list. */
  readonly requests: readonly StandinRequest[];
  clearRequests(): void;
  /** Every execution's start and end, oldest first (the last 10,000 records). */
  readonly executions: readonly ExecutionRecord[];
  /** Resolves once nothing is queued or running. */
  waitForIdle(timeoutMs?: number): Promise<void>;
  /** A ComfyUI restart: fresh queue/history/cache/counter, same port and files. Also revives a crash. */
  restart(): Promise<void>;
  /** Installs another version of the template package (null: uninstalls it), as a pip upgrade would. */
  setTemplates(version: string | null): void;
  close(): Promise<void>;
}

function prepareDirs(
  dir: string | undefined,
  seedExample: boolean,
  modelsDir: string | undefined,
): { dirs: DataDirs; created: boolean } {
  const root = dir ? resolve(dir) : mkdtempSync(join(tmpdir(), 'comfyui-standin-'));
  const dirs = {
    root,
    input: join(root, 'input'),
    output: join(root, 'output'),
    temp: join(root, 'temp'),
    models: modelsDir ? resolve(modelsDir) : join(root, 'models'),
  };
  for (const d of [dirs.input, dirs.output, dirs.temp, join(dirs.models, 'loras')])
    mkdirSync(d, { recursive: true });
  const example = join(dirs.input, 'example.png');
  if (seedExample && !existsSync(example)) {
    const img = solidImage(64, 64, 1, 0x4a7db8);
    writeFileSync(example, encodeRgbPng(img.frames[0]!, 64, 64));
  }
  return { dirs, created: !dir };
}

class StandinServer {
  readonly faults: FaultController;
  instance: Instance;
  crashed = false;
  private closing = false;
  private readonly http: Server;
  // ComfyUI's aiohttp agrees to permessage-deflate with any client that offers it (browsers do).
  private readonly wss = new WebSocketServer({ noServer: true, perMessageDeflate: true });
  private readonly sockets = new Set<Socket>();
  private readonly router = new Router();
  private readonly catalog: NodeCatalog;
  /** Model files per folder; with `modelsDir`, refreshed from the disk before model-listing requests. */
  private readonly models: Record<string, string[]>;
  private readonly site: StaticSite;
  /** The template package's files (path under /templates/ → bytes) and version, when installed. */
  templateLibrary: { version: string; files: Map<string, Buffer> } | null = null;
  readonly requests: StandinRequest[] = [];
  readonly executionLog: ExecutionLog;
  port: number;

  constructor(
    readonly host: string,
    port: number,
    readonly dirs: DataDirs,
    private readonly opts: StandinOptions,
  ) {
    this.port = port;
    this.models = { ...(opts.models ?? {}) };
    this.catalog = new NodeCatalog(
      dirs.input,
      this.models,
      opts.customNodes ? customNodeDefs() : {},
      join(dirs.models, 'loras'),
    );
    this.faults = new FaultController(
      {
        crash: () => this.crash(),
        setReachability: (mode) => this.setReachability(mode),
        isCrashed: () => this.crashed,
      },
      opts.delayMs ?? 1000,
    );
    this.executionLog = new ExecutionLog(opts.executionLog);
    this.instance = new Instance(this.catalog, dirs, this.faults, this.recordStart, this.executionLog);
    this.site = new StaticSite({ frontendRoot: opts.frontendRoot, extensionDirs: opts.extensionDirs });
    if (opts.templates) this.setTemplates(STANDIN_TEMPLATES_VERSION);
    addComfyRoutes(this.router, {
      instance: () => this.instance,
      catalog: this.catalog,
      dirs,
      faults: this.faults,
      models: this.models,
      lorasDir: join(dirs.models, 'loras'),
      modelsDir: dirs.models,
      host,
      port: () => this.port,
      site: this.site,
      templatesVersion: () => this.templateLibrary?.version ?? null,
    });
    addFileRoutes(this.router, dirs);
    addControlRoutes(this.router, { faults: this.faults, state: () => this.stateJson() });
    this.http = createServer((req, res) => void this.handle(req, res));
    this.http.on('connection', (socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
    this.http.on('upgrade', (req, socket: Socket, head) => void this.upgrade(req, socket, head));
  }

  /** Reads `modelsDir` like ComfyUI's folder_paths: files with a model extension, any depth. */
  private rescanModels(): void {
    const root = this.opts.modelsDir!;
    const exts = new Set(['.ckpt', '.pt', '.pt2', '.bin', '.pth', '.safetensors', '.pkl', '.sft']);
    for (const folder of MODEL_FOLDERS) {
      let found: string[] = [];
      try {
        found = (readdirSync(join(root, folder), { recursive: true, withFileTypes: true }) as Dirent[])
          .filter((d) => d.isFile() && exts.has(extname(d.name).toLowerCase()))
          .map((d) => relative(join(root, folder), join(d.parentPath, d.name)).split(sep).join('/'));
      } catch {
        /* no such folder */
      }
      const given = this.opts.models?.[folder] ?? [];
      const all = [...new Set([...given, ...found])];
      if (all.length > 0) this.models[folder] = all;
      else delete this.models[folder];
    }
    this.catalog.setModels(this.models);
  }

  async listen(): Promise<void> {
    await new Promise<void>((resolveListen, reject) => {
      this.http.once('error', reject);
      this.http.listen(this.port, this.host, () => {
        this.http.off('error', reject);
        resolveListen();
      });
    });
    const address = this.http.address();
    if (address && typeof address === 'object') this.port = address.port;
  }

  /** Stops accepting and drops every open connection (HTTP keep-alive, held requests, WebSockets). */
  async stopListening(): Promise<void> {
    this.instance.hub.terminateAll();
    for (const socket of this.sockets) socket.destroy();
    if (!this.http.listening) return;
    await new Promise<void>((r) => this.http.close(() => r()));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://standin.invalid');
    const head = req.method === 'HEAD';
    try {
      if (!url.pathname.startsWith('/standin/')) {
        this.requests.push({ method: req.method ?? 'GET', path: url.pathname });
        if (this.requests.length > 10_000) this.requests.shift();
        if (this.faults.serviceUnavailable)
          return send(res, reply.text('503: Service Unavailable', 503), head);
        await this.faults.waitWhileHung();
        if (this.crashed) return void res.destroy();
      }
      if (this.opts.modelsDir && /^(\/api)?\/(models|object_info)(\/|$)/.test(url.pathname))
        this.rescanModels();
      const match = this.router.match(req.method ?? 'GET', url.pathname);
      // web.static('/templates', <package>/templates): registered only when the package is installed.
      if (
        match === null &&
        this.templateLibrary &&
        url.pathname.startsWith('/templates/') &&
        (req.method === 'GET' || head)
      ) {
        let rel: string | null = null;
        try {
          rel = decodeURIComponent(url.pathname.slice('/templates/'.length));
        } catch {
          rel = null;
        }
        const body = rel === null ? undefined : this.templateLibrary.files.get(rel);
        if (!body) return send(res, reply.notFound(), head);
        const type = rel!.endsWith('.json')
          ? 'application/json'
          : rel!.endsWith('.png')
            ? 'image/png'
            : 'image/webp';
        return send(res, { status: 200, headers: { 'Content-Type': type }, body }, head);
      }
      if (match === null && this.site.active && (req.method === 'GET' || head)) {
        const file = await this.site.serve(url.pathname);
        if (file) return send(res, file, head);
      }
      if (match === null) return send(res, reply.notFound(), head);
      if (match === 'method') return send(res, reply.text('405: Method Not Allowed', 405), head);
      send(res, await match.handler(requestCtx(req, url, match.params)), head);
    } catch {
      if (!res.headersSent) send(res, reply.serverError(), head);
    }
  }

  private async upgrade(req: IncomingMessage, socket: Socket, head: Buffer): Promise<void> {
    socket.on('error', () => undefined);
    const url = new URL(req.url ?? '/', 'http://standin.invalid');
    if (url.pathname !== '/ws' && url.pathname !== '/api/ws') {
      return void socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n');
    }
    if (this.faults.serviceUnavailable) {
      return void socket.end('HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n');
    }
    await this.faults.waitWhileHung();
    if (this.crashed || socket.destroyed) return void socket.destroy();
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      this.instance.hub.attach(ws, url.searchParams.get('clientId'));
    });
  }

  setTemplates(version: string | null): void {
    this.templateLibrary = version === null ? null : { version, files: standinTemplateLibrary(version) };
  }

  /** dieMidJob: everything stops at once, as if the Python process died. */
  crash(): void {
    if (this.crashed) return;
    this.crashed = true;
    this.instance.shutdown();
    void this.stopListening();
    this.opts.onCrash?.();
  }

  private async setReachability(mode: false | UnreachableMode): Promise<void> {
    if (this.closing) return;
    if (mode === 'refuse') return this.stopListening();
    if (mode === '503') this.instance.hub.terminateAll();
    if (!this.crashed && !this.http.listening) await this.listen();
  }

  async restart(): Promise<void> {
    await this.stopListening();
    this.instance.shutdown();
    this.faults.unhang();
    this.instance = new Instance(this.catalog, this.dirs, this.faults, this.recordStart, this.executionLog);
    this.crashed = false;
    await this.faults.setUnreachable(false);
  }

  async close(): Promise<void> {
    this.closing = true;
    this.instance.shutdown();
    this.faults.unhang();
    await this.faults.setUnreachable(false).catch(() => undefined);
    await this.stopListening();
    this.wss.close();
  }

  state(): StandinState {
    const inst = this.instance;
    const { running, pending } = inst.queue.currentQueue();
    return {
      alive: !this.crashed && this.http.listening,
      crashed: this.crashed,
      queueRemaining: inst.queue.tasksRemaining(),
      running,
      pending,
      history: inst.queue.getHistory(),
      clientIds: inst.hub.clientIds(),
      promptNumber: inst.number,
      executions: [...this.executions],
    };
  }

  private readonly executions: StandinExecution[] = [];
  private readonly recordStart = (item: QueueItem): void => {
    const prefixes = Object.values(item[2])
      .map((n) => n.inputs.filename_prefix)
      .filter((v): v is string => typeof v === 'string');
    this.executions.push({ promptId: item[1], filenamePrefixes: prefixes, startedAt: Date.now() });
    if (this.executions.length > 10_000) this.executions.splice(0, this.executions.length - 10_000);
  };

  private stateJson() {
    const s = this.state();
    return {
      ...s,
      running: s.running.map((item) => item[1]),
      pending: s.pending.map((item) => item[1]),
      history: Object.keys(s.history),
      dirs: this.dirs,
      faults: this.faults.snapshot(),
    };
  }
}

/** Starts a stand-in ComfyUI on `host:port` (default 127.0.0.1 and a free port). */
export async function startStandin(opts: StandinOptions = {}): Promise<Standin> {
  const host = opts.host ?? '127.0.0.1';
  const { dirs, created } = prepareDirs(opts.dir, opts.seedExampleImage ?? true, opts.modelsDir);
  const server = new StandinServer(host, opts.port ?? 0, dirs, opts);
  await server.listen();
  let closed: Promise<void> | null = null;
  return {
    get url() {
      return `http://${host}:${server.port}`;
    },
    get wsUrl() {
      return `ws://${host}:${server.port}/ws`;
    },
    host,
    get port() {
      return server.port;
    },
    dirs,
    faults: server.faults,
    get state() {
      return server.state();
    },
    requests: server.requests,
    executions: server.executionLog.records,
    clearRequests: () => void server.requests.splice(0),
    waitForIdle: (timeoutMs = 10_000) =>
      waitUntil(() => server.instance.queue.tasksRemaining() === 0, timeoutMs),
    restart: () => server.restart(),
    setTemplates: (version) => server.setTemplates(version),
    close: () =>
      (closed ??= server.close().then(() => {
        if (created) rmSync(dirs.root, { recursive: true, force: true });
      })),
  };
}

async function waitUntil(condition: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`stand-in not idle after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
