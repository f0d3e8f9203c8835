/**
 * The system under attack: one real `comfy-multi serve` process (as test/e2e starts it), seeded with
 * accounts, a revoked worker token, a ComfyUI environment snapshot (from a fake worker that says it
 * is unhealthy, so it never gets a job) and a few jobs that stay pending because no healthy worker
 * is connected. The corpus then runs against it; the invariants are checked at the end.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createHmac } from 'node:crypto';
import WebSocket from 'ws';
import { loadConfig } from '../../src/config/load-config.js';
import { defaultSettings } from '../../src/store/index.js';
import { openSqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import { testSnapshot } from '../support/gateway-kit.js';
import { canonicalJson, sha256Hex } from '../../src/worker/agent/canonical-json.js';
import { modelFreePrompt } from '../support/prompts.js';
import { Processes, waitFor, type Proc } from '../support/processes.js';
import { freePort } from '../support/redis-server.js';
import { rawExchange, requestBytes } from './raw-http.js';
import type { Actor, Ctx, HttpResult } from './types.js';

const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));

/** Limits small enough that "too large" cases are cheap to send. */
export const LIMITS = {
  BODY_LIMIT: 2 * 1024 * 1024,
  UPLOAD_LIMIT: 1024 * 1024,
  SETTINGS_LIMIT: 3 * 1024 * 1024,
  USERDATA_LIMIT: 2 * 1024 * 1024,
} as const;

export interface LiveServer {
  ctx: Ctx;
  /** The entry point the server runs: `dist/cli/index.js` (compiled) or `src/cli/index.ts`. */
  entry: string;
  proc: Proc;
  procs: Processes;
  dataDir: string;
  /** Resident memory of the server process, bytes (Linux /proc). */
  rss(): number;
  /**
   * The server's `process.memoryUsage()` right after a full garbage collection, through the
   * inspector (the test server listens for it on a loopback port): what is really retained.
   */
  memoryAfterGc(): Promise<NodeJS.MemoryUsage>;
  /** One request with Connection: close; throws when the server does not answer. */
  request(
    method: string,
    path: string,
    opts?: { as?: Actor; headers?: Record<string, string>; body?: string | Buffer | object },
  ): Promise<HttpResult>;
  stop(): Promise<void>;
}

/**
 * The compiled server (`dist/`, what `npm start` runs; `npm test` builds it before the tests) when
 * it is newer than every source file, else the sources through tsx as test/e2e runs them.
 */
export function serverEntry(): string {
  const built = join(ROOT, 'dist/cli/index.js');
  if (!existsSync(built)) return 'src/cli/index.ts';
  const builtAt = statSync(built).mtimeMs;
  const stale = readdirSync(join(ROOT, 'src'), { recursive: true, withFileTypes: true }).some(
    (e) => e.isFile() && e.name.endsWith('.ts') && statSync(join(e.parentPath, e.name)).mtimeMs > builtAt,
  );
  return stale ? 'src/cli/index.ts' : 'dist/cli/index.js';
}

const secret = (label: string) => `${label}-${Math.random().toString(36).slice(2)}-hostile`;

export async function startLiveServer(): Promise<LiveServer> {
  const procs = new Processes();
  const dataDir = mkdtempSync(join(tmpdir(), 'cm-hostile-'));
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const host = `127.0.0.1:${port}`;
  const passwords: Record<string, string> = {
    admin: secret('admin'),
    alice: secret('alice'),
    bob: secret('bob'),
    carol: secret('carol'),
    erin: secret('erin'),
    victim: secret('victim'),
  };
  const tokens = {
    worker: secret('wk'),
    revoked: '',
    live: '',
    api: secret('api'),
    metrics: secret('metrics-token'),
  };
  const baseEnv = { DATA_DIR: dataDir, LOG_LEVEL: 'warn', ADMIN_PASSWORD: passwords.admin! };
  const entry = serverEntry();
  // The inspector (loopback, random port) lets the run force a garbage collection before measuring.
  const proc = procs.run('serve', ['--inspect=127.0.0.1:0', entry, 'serve'], {
    ...baseEnv,
    HOST: '127.0.0.1',
    PORT: String(port),
    API_TOKENS: `script:${tokens.api}`,
    WORKER_TOKENS: `gpu:${tokens.worker}`,
    METRICS_TOKEN: tokens.metrics,
    FRONTEND_DIR: join(ROOT, 'test/fixtures/mini-frontend'),
    BODY_LIMIT: String(LIMITS.BODY_LIMIT),
    UPLOAD_LIMIT: String(LIMITS.UPLOAD_LIMIT),
    MAX_PENDING_PER_USER: '200',
    SETTINGS_LIMIT: String(LIMITS.SETTINGS_LIMIT),
    USERDATA_LIMIT: String(LIMITS.USERDATA_LIMIT),
    // Short enough that the slow-sender cases end within the run (Node checks every 30 s).
    HEADERS_TIMEOUT_MS: '3000',
    BODY_IDLE_TIMEOUT_MS: '3000',
    REQUEST_TIMEOUT_MS: '8000',
  });

  const cookies: Partial<Record<Actor, string>> = {};
  const basic = (u: string) => `Basic ${Buffer.from(`${u}:${passwords[u]}`).toString('base64')}`;
  const headers = (actor: Actor): Record<string, string> => {
    switch (actor) {
      case 'anon':
        return {};
      case 'aliceBasic':
        return { authorization: basic('alice') };
      case 'adminBasic':
        return { authorization: basic('admin') };
      case 'api':
        return { authorization: `Bearer ${tokens.api}` };
      case 'worker':
        return { authorization: `Bearer ${tokens.worker}` };
      case 'revokedWorker':
        return { authorization: `Bearer ${tokens.revoked}` };
      case 'liveWorker':
        return { authorization: `Bearer ${tokens.live}` };
      default: {
        const c = cookies[actor];
        if (!c) throw new Error(`no session for ${actor}`);
        return { cookie: c };
      }
    }
  };

  const request: LiveServer['request'] = async (method, path, opts = {}) => {
    const h: Record<string, string> = { ...headers(opts.as ?? 'anon'), ...(opts.headers ?? {}) };
    let body: Buffer | undefined;
    if (opts.body !== undefined) {
      if (Buffer.isBuffer(opts.body)) body = opts.body;
      else if (typeof opts.body === 'string') body = Buffer.from(opts.body, 'utf8');
      else {
        body = Buffer.from(JSON.stringify(opts.body), 'utf8');
        if (!Object.keys(h).some((k) => k.toLowerCase() === 'content-type'))
          h['content-type'] = 'application/json';
      }
    }
    const out = await rawExchange(port, [requestBytes(method, path, host, h, body)], 15_000);
    if (!out.result) throw new Error(`${method} ${path}: no answer (timed out: ${out.timedOut})`);
    return out.result;
  };

  const login = async (user: string): Promise<string> => {
    const r = await request('POST', '/login', { body: { user, password: passwords[user] } });
    if (r.status !== 200) throw new Error(`login ${user}: ${r.status} ${r.body.toString()}`);
    const set = r.headers['set-cookie'] ?? '';
    const m = /cm_session=([^;]+)/.exec(set);
    if (!m) throw new Error(`login ${user}: no session cookie`);
    return `cm_session=${m[1]}`;
  };

  try {
    await waitFor(async () => (await fetch(`${base}/health`)).ok, 30_000, 'the control plane');
    // Accounts and tokens through the real CLI, all at once (the server made `admin` on its first start).
    const cli = (name: string, args: string[], stdin?: string) =>
      procs.run(name, [entry, ...args], baseEnv, stdin);
    const revokeToken = async (name: string): Promise<void> => {
      const revoke = cli(`token-revoke-${name}`, ['workers', 'token', 'revoke', name]);
      if ((await revoke.exited) !== 0) throw new Error(`token revoke failed:\n${revoke.log.join('')}`);
    };
    const adds = ['alice', 'bob', 'carol', 'erin', 'victim'].map(
      (u) => cli(`users-add-${u}`, ['users', 'add', u, '--password-stdin'], `${passwords[u]}\n`).exited,
    );
    const createToken = async (name: string): Promise<string> => {
      const create = cli(`token-create-${name}`, ['workers', 'token', 'create', name]);
      if ((await create.exited) !== 0) throw new Error(`token create failed:\n${create.log.join('')}`);
      const token = /^([A-Za-z0-9_.-]{20,})$/m.exec(create.log.join(''));
      if (!token) throw new Error(`no token in:\n${create.log.join('')}`);
      return token[1]!;
    };
    const revoked = (async () => {
      tokens.revoked = await createToken('gone');
      await revokeToken('gone');
    })();
    const live = createToken('live').then((t) => (tokens.live = t));
    const codes = await Promise.all(adds);
    if (codes.some((c) => c !== 0)) throw new Error(`users add failed: ${codes.join(',')}\n${procs.logs()}`);
    await revoked;
    await live;

    for (const u of ['alice', 'bob', 'admin'] as const) cookies[u] = await login(u);
    // A good Basic login is cached, so later throttling of *bad* logins cannot lock these out.
    for (const a of ['aliceBasic', 'adminBasic'] as const) {
      const r = await request('GET', a === 'aliceBasic' ? '/alice/api/queue' : '/api/v1/queue', { as: a });
      if (r.status !== 200) throw new Error(`${a}: ${r.status}`);
    }
    const me = await request('GET', '/admin/api/me', { as: 'admin' });
    const adminCsrf = (me.json as { csrfToken: string }).csrfToken;

    // The session key, read through the store as any process sharing it would: to sign cookies
    // that are genuine but expired, or for a password version or account that no longer matches.
    const store = await openSqliteStore({
      path: join(dataDir, 'comfy-multi.db'),
      defaults: defaultSettings(loadConfig({ DATA_DIR: dataDir })),
    });
    const sessionKey = Buffer.from((await store.getBlob('secrets', 'session')) ?? '', 'hex');
    await store.close();
    const aliceToken = cookies.alice!.replace('cm_session=', '');
    const aliceClaims = JSON.parse(
      Buffer.from(aliceToken.split('.')[0]!, 'base64url').toString('utf8'),
    ) as Record<string, unknown>;
    const signedSession = (change: (claims: Record<string, unknown>) => Record<string, unknown>) => {
      const body = Buffer.from(JSON.stringify(change({ ...aliceClaims }))).toString('base64url');
      return `cm_session=${body}.${createHmac('sha256', sessionKey).update(body).digest('base64url')}`;
    };

    await uploadEnvironment(base, tokens.worker);
    await waitFor(
      async () => {
        const r = await request('GET', '/alice/api/object_info/SaveImage', { as: 'alice' });
        return r.status === 200 && Object.keys((r.json as object) ?? {}).length > 0;
      },
      10_000,
      'the environment snapshot',
    );

    // alice's own file, and a folder `seeddir` (for the name-collision cases).
    const aliceFile = 'hostile-seed.png';
    const boundary = 'seedboundary';
    for (const subfolder of ['', 'seeddir']) {
      const up = await request('POST', '/alice/upload/image', {
        as: 'alice',
        headers: { 'content-type': `multipart/form-data; boundary=${boundary}` },
        body: Buffer.concat([
          Buffer.from(
            `--${boundary}\r\nContent-Disposition: form-data; name="subfolder"\r\n\r\n${subfolder}\r\n` +
              `--${boundary}\r\nContent-Disposition: form-data; name="image"; filename="${aliceFile}"\r\nContent-Type: image/png\r\n\r\n`,
          ),
          readFileSync(join(ROOT, 'test/fixtures/mini-frontend/assets/favicon.ico')),
          Buffer.from(`\r\n--${boundary}--\r\n`),
        ]),
      });
      if (up.status !== 200) throw new Error(`seed upload: ${up.status} ${up.body.toString()}`);
    }

    const jobs = { carol: [] as string[], alice: [] as string[] };
    for (let i = 0; i < 3; i++) {
      const r = await request('POST', '/api/v1/jobs', {
        as: 'api',
        body: { user: 'carol', prompt: modelFreePrompt({ color: 0x100000 + i }) },
      });
      if (r.status !== 201) throw new Error(`seed job: ${r.status} ${r.body.toString()}`);
      jobs.carol.push((r.json as { id: string }).id);
    }
    const a = await request('POST', '/alice/api/prompt', {
      as: 'alice',
      body: { prompt: modelFreePrompt({ color: 0x200000 }), client_id: 'seed' },
    });
    if (a.status !== 200) throw new Error(`seed prompt: ${a.status} ${a.body.toString()}`);
    jobs.alice.push((a.json as { prompt_id: string }).prompt_id);

    const ctx: Ctx = {
      base,
      host,
      port,
      jobs,
      aliceFile,
      headers,
      adminCsrf,
      passwords,
      tokens,
      freshSession: (u) => login(u),
      signedSession,
      revokeToken,
      vars: {},
    };
    return {
      ctx,
      entry,
      proc,
      procs,
      dataDir,
      rss: () => rssOf(proc.child.pid!),
      memoryAfterGc: () => memoryAfterGc(proc),
      request,
      async stop() {
        await procs.killAll();
        if (process.env.E2E_KEEP !== '1') rmSync(dataDir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    console.error(procs.logs());
    await procs.killAll();
    rmSync(dataDir, { recursive: true, force: true });
    throw err;
  }
}

/** Forces a full GC in the server through its inspector, then reads its memory usage. */
async function memoryAfterGc(proc: Proc): Promise<NodeJS.MemoryUsage> {
  const url = /Debugger listening on (ws:\/\/\S+)/.exec(proc.log.join(''))?.[1];
  if (!url) throw new Error('the server did not start its inspector');
  const ws = new WebSocket(url);
  await new Promise<void>((res, rej) => {
    ws.once('open', () => res());
    ws.once('error', rej);
  });
  let id = 0;
  const call = (method: string, params: Record<string, unknown> = {}) =>
    new Promise<Record<string, unknown>>((res, rej) => {
      const my = ++id;
      const t = setTimeout(() => rej(new Error(`inspector ${method} timed out`)), 15_000);
      const on = (data: WebSocket.RawData) => {
        const msg = JSON.parse(String(data)) as { id?: number; result?: Record<string, unknown> };
        if (msg.id !== my) return;
        clearTimeout(t);
        ws.off('message', on);
        res(msg.result ?? {});
      };
      ws.on('message', on);
      ws.send(JSON.stringify({ id: my, method, params }));
    });
  try {
    await call('HeapProfiler.collectGarbage');
    await call('HeapProfiler.collectGarbage');
    const r = await call('Runtime.evaluate', {
      expression: 'JSON.stringify(process.memoryUsage())',
      returnByValue: true,
    });
    return JSON.parse((r.result as { value: string }).value) as NodeJS.MemoryUsage;
  } finally {
    ws.close();
  }
}

function rssOf(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error('no VmRSS');
  return Number(m[1]) * 1024;
}

/**
 * Plays a worker agent just long enough to store a ComfyUI environment snapshot (so prompts are
 * validated against real object_info), saying it is unhealthy so the dispatcher never gives it a job.
 */
async function uploadEnvironment(base: string, token: string): Promise<void> {
  const snapshot = testSnapshot();
  const hash = sha256Hex(canonicalJson(snapshot));
  const ws = new WebSocket(`${base.replace('http', 'ws')}/worker/v1/ws`, {
    headers: { authorization: `Bearer ${token}` },
  });
  await new Promise<void>((res, rej) => {
    const t = setTimeout(() => rej(new Error('env upload timed out')), 15_000);
    ws.on('error', rej);
    ws.on('open', () =>
      ws.send(
        JSON.stringify({
          type: 'hello',
          protocol: 1,
          name: 'env-seeder',
          agentVersion: 'hostile',
          comfyuiVersion: '0.3.64',
          devices: [],
          envHash: hash,
          prefetch: 0,
          inFlight: [],
          warmModels: [],
          healthy: false,
        }),
      ),
    );
    ws.on('message', (data) => {
      const msg = JSON.parse(String(data)) as { type: string; needEnv?: boolean };
      if (msg.type !== 'welcome') return;
      if (msg.needEnv) ws.send(JSON.stringify({ type: 'env', hash, snapshot }));
      // The hub handles a connection's messages in order: once it answers a heartbeat, env is stored.
      ws.send(JSON.stringify({ type: 'heartbeat', healthy: false, devices: [], inFlight: [] }));
      setTimeout(() => {
        clearTimeout(t);
        ws.close();
        res();
      }, 200);
    });
  });
}
