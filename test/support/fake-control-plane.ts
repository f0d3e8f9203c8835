/**
 * A small, real control plane for agent tests: an HTTP server with the worker WebSocket
 * (`/worker/v1/ws`, Bearer token checked), the output upload endpoint, the input download
 * endpoint and the three frontend mirror endpoints (offer, blob upload, complete). It records everything the agent says and lets the test push `assign`, `cancel`,
 * `release`... as the real hub would. Nothing here is shared with the production hub on purpose:
 * the agent must work against the protocol, not against one implementation.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createHash } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import {
  agentMessage,
  decodePreviewFrame,
  frontendOfferSchema,
  PROTOCOL_VERSION,
  type AgentMessage,
  type FrontendOffer,
  type ServerMessage,
} from '../../src/worker/protocol.js';

export interface UploadedOutput {
  jobId: string;
  attempt: number;
  nodeId: string;
  /** `<subfolder/filename>` as the agent sent it in the URL. */
  path: string;
  type: string;
  kind: string;
  body: Buffer;
  sha256: string;
}

export interface WelcomeOptions {
  needEnv?: boolean;
  heartbeatMs?: number;
  leaseMs?: number;
  /** Computes `forget` from the hello's in-flight list; default: forget nothing. */
  forget?: (inFlight: { jobId: string; attempt: number }[]) => { jobId: string; attempt: number }[];
  /** Sent as `welcome.mirrorFrontend` when set; absent otherwise. */
  mirrorFrontend?: boolean;
  /** Sent as `welcome.acks` when set (the test then acknowledges reports with `send`). */
  acks?: boolean;
  /** Sent as `welcome.eventSeq` when set: the agent numbers its events and sends them again. */
  eventSeq?: boolean;
  /** Sent as `welcome.earlyOutputs` when set: the agent relays `executed` before its upload is done. */
  earlyOutputs?: boolean;
}

/** What the frontend mirror endpoints received. */
export interface FakeFrontendMirror {
  /** While false, offers are answered 409 FRONTEND_NOT_WANTED. Default true. */
  wanted: boolean;
  /** Every valid offer, in order. */
  offers: FrontendOffer[];
  /** Contents received, by sha256. */
  blobs: Map<string, Buffer>;
  /** sha256 of each accepted PUT, in order (repeats included). */
  puts: string[];
  /** Version ids completed, in order. */
  completed: string[];
}

export interface FakeControlPlane {
  url: string;
  token: string;
  /** Every text message received, in order, with the connection number it came on. */
  messages: { conn: number; msg: AgentMessage; at: number }[];
  previews: { jobId: string; comfyFrame: Buffer }[];
  uploads: UploadedOutput[];
  /** Files served at `GET /worker/v1/jobs/:jobId/inputs/<path>`, keyed by `<jobId>/<path>`. */
  inputs: Map<string, Buffer>;
  welcome: WelcomeOptions;
  /** How many sockets connected (authorised) so far. */
  connections(): number;
  /** Rejections by status code. */
  rejected: number[];
  send(msg: ServerMessage): void;
  /** Drops the current agent socket (as a crash or network cut would). */
  dropConnection(): void;
  /** Closes the current agent socket with this WebSocket close code. */
  closeWith(code: number, reason: string): void;
  /** Next message matching `pred` (already received ones after `fromIndex` count). */
  waitFor<T extends AgentMessage['type']>(
    type: T,
    pred?: (m: Extract<AgentMessage, { type: T }>) => boolean,
    timeoutMs?: number,
  ): Promise<Extract<AgentMessage, { type: T }>>;
  ofType<T extends AgentMessage['type']>(type: T): Extract<AgentMessage, { type: T }>[];
  /** Fails uploads with this HTTP status while set. */
  failUploadsWith: number | null;
  /** While set, an upload is answered (and recorded) only once this settles. */
  holdUploads: Promise<void> | null;
  frontend: FakeFrontendMirror;
  close(): Promise<void>;
}

export async function startFakeControlPlane(
  opts: { token?: string; welcome?: WelcomeOptions } = {},
): Promise<FakeControlPlane> {
  const token = opts.token ?? 'test-worker-token';
  const messages: FakeControlPlane['messages'] = [];
  const previews: FakeControlPlane['previews'] = [];
  const uploads: UploadedOutput[] = [];
  const inputs = new Map<string, Buffer>();
  const rejected: number[] = [];
  const frontend: FakeFrontendMirror = {
    wanted: true,
    offers: [],
    blobs: new Map(),
    puts: [],
    completed: [],
  };
  const pendingOffers = new Map<string, FrontendOffer>();
  const waiters = new Set<() => void>();
  let current: WebSocket | undefined;
  let conns = 0;

  const notify = () => {
    for (const w of [...waiters]) w();
  };

  const authorised = (req: IncomingMessage) => req.headers.authorization === `Bearer ${token}`;

  const server: Server = createServer((req, res) => {
    handleHttp(req, res).catch((err: unknown) => {
      res.statusCode = 500;
      res.end(String(err));
    });
  });

  async function handleHttp(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (!authorised(req)) {
      res.statusCode = 401;
      res.end('{"error":{"code":"INVALID_TOKEN"}}');
      return;
    }
    const url = new URL(req.url ?? '/', 'http://x');
    const put = /^\/worker\/v1\/jobs\/([^/]+)\/attempts\/(\d+)\/outputs\/([^/]+)\/(.+)$/.exec(url.pathname);
    if (req.method === 'PUT' && put) {
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      if (fake.holdUploads) await fake.holdUploads;
      if (fake.failUploadsWith) {
        res.statusCode = fake.failUploadsWith;
        res.end();
        return;
      }
      const body = Buffer.concat(chunks);
      const [, jobId, attempt, nodeId, path] = put;
      uploads.push({
        jobId: decodeURIComponent(jobId!),
        attempt: Number(attempt),
        nodeId: decodeURIComponent(nodeId!),
        path: path!.split('/').map(decodeURIComponent).join('/'),
        type: url.searchParams.get('type') ?? '',
        kind: url.searchParams.get('kind') ?? '',
        body,
        sha256: createHash('sha256').update(body).digest('hex'),
      });
      notify();
      res.statusCode = 201;
      res.setHeader('content-type', 'application/json');
      res.end('{}');
      return;
    }
    if (url.pathname.startsWith('/worker/v1/frontend/')) return handleFrontend(req, res, url.pathname);
    const get = /^\/worker\/v1\/jobs\/([^/]+)\/inputs\/(.+)$/.exec(url.pathname);
    if (req.method === 'GET' && get) {
      const key = `${decodeURIComponent(get[1]!)}/${get[2]!.split('/').map(decodeURIComponent).join('/')}`;
      const file = inputs.get(key);
      if (!file) {
        res.statusCode = 404;
        res.end();
        return;
      }
      res.setHeader('content-type', 'application/octet-stream');
      res.setHeader('content-length', String(file.length));
      res.end(file);
      return;
    }
    res.statusCode = 404;
    res.end();
  }

  /** The mirror endpoints, minimally: content-addressed, hash-checked, no assembly. */
  async function handleFrontend(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks);
    const json = (status: number, value: unknown) => {
      res.statusCode = status;
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify(value));
      notify();
    };
    const error = (status: number, code: string, details?: Record<string, unknown>) =>
      json(status, { error: { code, message: code, ...(details ? { details } : {}) } });
    const missingOf = (offer: FrontendOffer) => [
      ...new Set(offer.files.map((f) => f.sha256).filter((sha) => !frontend.blobs.has(sha))),
    ];
    if (req.method === 'POST' && path === '/worker/v1/frontend/offers') {
      if (!frontend.wanted) return error(409, 'FRONTEND_NOT_WANTED');
      const parsed = frontendOfferSchema.safeParse(JSON.parse(body.toString('utf8') || 'null'));
      if (!parsed.success) return error(400, 'VALIDATION_FAILED', { issues: parsed.error.issues });
      const offer = parsed.data;
      frontend.offers.push(offer);
      const versionId = createHash('sha256')
        .update(
          [...offer.files]
            .sort((a, b) => (a.path < b.path ? -1 : 1))
            .map((f) => `${f.path}\0${f.sha256}`)
            .join('\n'),
        )
        .digest('hex')
        .slice(0, 16);
      const missing = missingOf(offer);
      if (frontend.completed.includes(versionId))
        return json(200, { versionId, status: 'present', missing: [] });
      if (missing.length === 0) {
        frontend.completed.push(versionId);
        return json(200, { versionId, status: 'present', missing: [] });
      }
      pendingOffers.set(versionId, offer);
      return json(200, { versionId, status: 'pending', missing });
    }
    const put = /^\/worker\/v1\/frontend\/blobs\/([0-9a-f]{64})$/.exec(path);
    if (req.method === 'PUT' && put) {
      const sha = put[1]!;
      if (![...pendingOffers.values()].some((o) => o.files.some((f) => f.sha256 === sha)))
        return error(409, 'CONFLICT');
      if (createHash('sha256').update(body).digest('hex') !== sha) return error(400, 'HASH_MISMATCH');
      frontend.blobs.set(sha, body);
      frontend.puts.push(sha);
      return json(200, { sha256: sha, size: body.length });
    }
    const complete = /^\/worker\/v1\/frontend\/offers\/([0-9a-f]{16})\/complete$/.exec(path);
    if (req.method === 'POST' && complete) {
      const versionId = complete[1]!;
      const offer = pendingOffers.get(versionId);
      if (!offer) return error(404, 'NOT_FOUND');
      const missing = missingOf(offer);
      if (missing.length > 0) return error(409, 'FRONTEND_INCOMPLETE', { missing });
      pendingOffers.delete(versionId);
      frontend.completed.push(versionId);
      return json(200, { versionId, status: 'present', missing: [] });
    }
    res.statusCode = 404;
    res.end();
  }

  const wss = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req, socket, head) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    if (path !== '/worker/v1/ws') {
      socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      rejected.push(404);
      return;
    }
    if (!authorised(req)) {
      socket.end('HTTP/1.1 401 Unauthorized\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      rejected.push(401);
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => onSocket(ws));
  });

  function onSocket(ws: WebSocket): void {
    const conn = ++conns;
    current = ws;
    ws.on('message', (data, isBinary) => {
      if (isBinary) {
        const frame = decodePreviewFrame(data as Buffer);
        if (frame) previews.push(frame);
        notify();
        return;
      }
      const parsed = agentMessage.safeParse(JSON.parse(data.toString()));
      if (!parsed.success)
        throw new Error(
          `fake control plane: invalid agent message ${data.toString()}: ${parsed.error.message}`,
        );
      const msg = parsed.data;
      messages.push({ conn, msg, at: performance.now() });
      if (msg.type === 'hello') {
        const w = fake.welcome;
        const welcome: ServerMessage = {
          type: 'welcome',
          protocol: PROTOCOL_VERSION,
          workerId: `worker-${msg.name}`,
          leaseMs: w.leaseMs ?? 30_000,
          heartbeatMs: w.heartbeatMs ?? 1000,
          needEnv: w.needEnv ?? false,
          forget: w.forget ? w.forget(msg.inFlight) : [],
          ...(w.mirrorFrontend !== undefined ? { mirrorFrontend: w.mirrorFrontend } : {}),
          ...(w.acks !== undefined ? { acks: w.acks } : {}),
          ...(w.eventSeq !== undefined ? { eventSeq: w.eventSeq } : {}),
          ...(w.earlyOutputs !== undefined ? { earlyOutputs: w.earlyOutputs } : {}),
        };
        ws.send(JSON.stringify(welcome));
      }
      notify();
    });
    ws.on('close', () => {
      if (current === ws) current = undefined;
    });
  }

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;

  const fake: FakeControlPlane = {
    url: `http://127.0.0.1:${port}`,
    token,
    messages,
    previews,
    uploads,
    inputs,
    rejected,
    welcome: opts.welcome ?? {},
    failUploadsWith: null,
    holdUploads: null,
    frontend,
    connections: () => conns,
    send(msg) {
      if (!current) throw new Error('fake control plane: no agent connected');
      current.send(JSON.stringify(msg));
    },
    dropConnection() {
      current?.terminate();
      current = undefined;
    },
    closeWith(code, reason) {
      current?.close(code, reason);
      current = undefined;
    },
    ofType(type) {
      return messages.filter((m) => m.msg.type === type).map((m) => m.msg) as never;
    },
    waitFor(type, pred, timeoutMs = 10_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const hit = messages.find(
            (m) =>
              m.msg.type === type && (!pred || pred(m.msg as Extract<AgentMessage, { type: typeof type }>)),
          );
          if (hit) {
            clearTimeout(timer);
            waiters.delete(check);
            resolve(hit.msg as never);
          }
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          const seen = messages.map((m) => m.msg.type).join(', ');
          reject(new Error(`fake control plane: no ${type} within ${timeoutMs} ms (seen: ${seen})`));
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
    async close() {
      for (const c of wss.clients) c.terminate();
      wss.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  return fake;
}
