/**
 * Everything a soak runs, on loopback: the control plane (`node bin/comfy-multi.js serve`, the
 * compiled build, or `src/cli/index.ts` through tsx when no fresh build exists), a private
 * redis-server with AOF for `--store redis`, and per GPU one ComfyUI stand-in (with its execution
 * record) plus one worker agent. Each piece can be killed, frozen and restarted; the control
 * plane's resident memory is sampled throughout.
 */
import { readParticipantsFile } from '../../src/auth/login-material.js';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Processes, waitFor, type Proc } from '../support/processes.js';
import { freePort, startRedisServer, type RedisServerHandle } from '../support/redis-server.js';
import type { ExecutionRecord } from '../support/comfyui-standin/exec-log.js';

const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const ADMIN_PASSWORD = 'soak-admin-password';

export interface ClusterOptions {
  dir: string;
  users: number;
  workers: number;
  store: 'sqlite' | 'redis';
  leaseMs: number;
  heartbeatMs: number;
  /** `compiled` runs dist/ (npm run build); `tsx` runs src/ directly. */
  build: 'compiled' | 'tsx';
  log: (line: string) => void;
}

export interface Gpu {
  index: number;
  /** The worker id the control plane gives this agent: `<token name>:<worker name>`. */
  workerId: string;
  token: string;
  comfyUrl: string;
  comfyPort: number;
  execLog: string;
  standin: Proc | null;
  agent: Proc | null;
}

export interface RssSample {
  t: number;
  mb: number;
  /** Which control-plane process (0 = first start, +1 per restart). */
  life: number;
}

export interface WorkerView {
  id: string;
  status: string;
  heldJobs: { jobId: string; state: string }[];
}

export interface JobView {
  id: string;
  user: string;
  status: string;
  attempts: number;
  workerId: string | null;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  error: { reason: string; message: string } | null;
  outputs: { nodeId: string; filename: string; subfolder: string; type: string; size?: number }[];
}

/** True when dist/cli/index.js exists and is newer than every file under src/. */
export function freshBuild(): boolean {
  const built = join(ROOT, 'dist/cli/index.js');
  if (!existsSync(built)) return false;
  const builtAt = statSync(built).mtimeMs;
  const newest = (dir: string): number => {
    let m = 0;
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) m = Math.max(m, newest(p));
      else if (e.name.endsWith('.ts') && !e.name.endsWith('.test.ts')) m = Math.max(m, statSync(p).mtimeMs);
    }
    return m;
  };
  return newest(join(ROOT, 'src')) <= builtAt;
}

export class Cluster {
  readonly procs = new Processes();
  readonly gpus: Gpu[] = [];
  readonly rss: RssSample[] = [];
  readonly apiToken = randomBytes(16).toString('hex');
  url = '';
  cp: Proc | null = null;
  redis: RedisServerHandle | null = null;
  passwords = new Map<string, string>();
  private port = 0;
  private redisPort = 0;
  private life = -1;
  private sampler: NodeJS.Timeout | null = null;
  private readonly dataDir: string;

  constructor(private readonly opts: ClusterOptions) {
    this.dataDir = join(opts.dir, 'data');
  }

  get filesDir(): string {
    return join(this.dataDir, 'files');
  }

  private cli(): { args: string[]; tsx: boolean } {
    return this.opts.build === 'compiled'
      ? { args: ['bin/comfy-multi.js'], tsx: false }
      : { args: ['src/cli/index.ts'], tsx: true };
  }

  private env(): Record<string, string> {
    return {
      DATA_DIR: this.dataDir,
      HOST: '127.0.0.1',
      PORT: String(this.port),
      LOG_LEVEL: 'warn',
      ADMIN_PASSWORD,
      API_TOKENS: `soak:${this.apiToken}`,
      WORKER_TOKENS: this.gpus.map((g) => `w${g.index}:${g.token}`).join(','),
      LEASE_MS: String(this.opts.leaseMs),
      HEARTBEAT_MS: String(this.opts.heartbeatMs),
      FRONTEND_MIRROR: 'false',
      STORE: this.opts.store,
      ...(this.redis ? { REDIS_URL: this.redis.url } : {}),
    };
  }

  async start(): Promise<void> {
    mkdirSync(this.dataDir, { recursive: true });
    this.port = await freePort();
    this.url = `http://127.0.0.1:${this.port}`;
    if (this.opts.store === 'redis') await this.startRedis();
    for (let i = 1; i <= this.opts.workers; i++) {
      const comfyPort = await freePort();
      this.gpus.push({
        index: i,
        workerId: `w${i}:gpu-${i}`,
        token: randomBytes(12).toString('hex'),
        comfyUrl: `http://127.0.0.1:${comfyPort}`,
        comfyPort,
        execLog: join(this.opts.dir, `standin-${i}.executions.jsonl`),
        standin: null,
        agent: null,
      });
    }
    await this.startControlPlane();
    const init = this.procs.run(
      'users-init',
      [
        ...this.cli().args,
        'users',
        'init',
        '--count',
        String(this.opts.users),
        '--out',
        join(this.opts.dir, 'participants.txt'),
      ],
      this.env(),
      undefined,
      { tsx: this.cli().tsx },
    );
    if ((await init.exited) !== 0) throw new Error(`users init failed:\n${init.log.join('')}`);
    // The participants file as `users init` writes it (the same reader the CLI uses).
    for (const [name, entry] of readParticipantsFile(join(this.opts.dir, 'participants.txt'))) {
      if (entry.password) this.passwords.set(name, entry.password);
    }
    await Promise.all(this.gpus.map((g) => this.startStandin(g)));
    for (const g of this.gpus) this.startAgent(g);
    await this.waitForWorkers();
    this.sampler = setInterval(() => this.sample(), 2000);
  }

  // ---- pieces -----------------------------------------------------------------------------------

  async startRedis(): Promise<void> {
    const dir = join(this.opts.dir, 'redis');
    mkdirSync(dir, { recursive: true });
    this.redisPort ||= await freePort();
    this.redis = await startRedisServer({ appendonly: true, dir, port: this.redisPort });
  }

  /** A Redis restart: SIGTERM (it writes its AOF), then start again on the same port and data. */
  async restartRedis(downMs: number): Promise<void> {
    await this.redis?.stop();
    await sleep(downMs);
    await this.startRedis();
  }

  async startControlPlane(): Promise<void> {
    this.life++;
    const { args, tsx } = this.cli();
    this.cp = this.procs.run(`serve-${this.life}`, [...args, 'serve'], this.env(), undefined, { tsx });
    const cp = this.cp;
    await waitFor(
      async () => {
        if (cp.child.exitCode !== null)
          throw new Error(`the control plane exited:\n${cp.log.join('').slice(-3000)}`);
        return (await fetch(`${this.url}/health`, { signal: AbortSignal.timeout(2000) })).ok;
      },
      60_000,
      'the control plane',
    );
  }

  async killControlPlane(): Promise<void> {
    if (!this.cp) return;
    this.procs.kill(this.cp, 'SIGKILL');
    await this.cp.exited;
  }

  async startStandin(g: Gpu): Promise<void> {
    const dir = join(this.opts.dir, `standin-${g.index}`);
    g.standin = this.procs.run(
      `standin-${g.index}`,
      [
        'test/support/comfyui-standin/main.ts',
        '--port', String(g.comfyPort),
        '--dir', dir,
        '--execution-log', g.execLog,
      ], // prettier-ignore
      {},
    );
    await waitFor(
      async () => (await fetch(`${g.comfyUrl}/system_stats`, { signal: AbortSignal.timeout(2000) })).ok,
      60_000,
      `ComfyUI stand-in ${g.index}`,
    );
  }

  startAgent(g: Gpu): void {
    const { args, tsx } = this.cli();
    g.agent = this.procs.run(
      `agent-${g.index}`,
      [
        ...args,
        'worker',
        '--server',
        this.url,
        '--comfyui',
        g.comfyUrl,
        '--name',
        `gpu-${g.index}`,
        '--prefetch',
        '1',
      ],
      { COMFY_MULTI_TOKEN: g.token, LOG_LEVEL: 'warn' },
      undefined,
      { tsx },
    );
  }

  async kill(p: Proc | null): Promise<void> {
    if (!p) return;
    this.procs.kill(p, 'SIGKILL');
    await p.exited;
  }

  signal(p: Proc | null, signal: NodeJS.Signals): void {
    if (p) this.procs.kill(p, signal);
  }

  async waitForWorkers(timeoutMs = 60_000): Promise<void> {
    await waitFor(
      async () => {
        const ws = await this.workers();
        return this.gpus.every((g) => ws.some((w) => w.id === g.workerId && w.status !== 'offline'));
      },
      timeoutMs,
      'every worker connected',
    );
  }

  // ---- the instructor API -----------------------------------------------------------------------

  async api<T>(method: string, path: string): Promise<T> {
    const res = await fetch(`${this.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${this.apiToken}` },
      signal: AbortSignal.timeout(10_000),
    });
    if (!res.ok) throw new Error(`${method} ${path} answered ${res.status}`);
    return (await res.json()) as T;
  }

  async workers(): Promise<WorkerView[]> {
    return (await this.api<{ workers: WorkerView[] }>('GET', '/api/v1/workers')).workers;
  }

  /** Every job, oldest first, page by page. */
  async allJobs(): Promise<JobView[]> {
    const out: JobView[] = [];
    let cursor: string | null = null;
    do {
      const page: { jobs: JobView[]; nextCursor: string | null } = await this.api(
        'GET',
        `/api/v1/jobs?limit=500&order=asc${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`,
      );
      out.push(...page.jobs);
      cursor = page.nextCursor;
    } while (cursor);
    return out;
  }

  /** Every execution record of every stand-in, tagged with its GPU. */
  executions(): (ExecutionRecord & { gpu: number })[] {
    const out: (ExecutionRecord & { gpu: number })[] = [];
    for (const g of this.gpus) {
      if (!existsSync(g.execLog)) continue;
      for (const line of readFileSync(g.execLog, 'utf8').split('\n')) {
        if (!line.trim()) continue;
        try {
          out.push({ ...(JSON.parse(line) as ExecutionRecord), gpu: g.index });
        } catch {
          // a line torn by kill -9 mid-write: the execution shows as started, never ended
        }
      }
    }
    return out;
  }

  // ---- memory -------------------------------------------------------------------------------------

  private sample(): void {
    const pid = this.cp?.child.pid;
    if (!pid || this.cp?.child.exitCode !== null || this.cp.child.signalCode !== null) return;
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      if (m) this.rss.push({ t: Date.now(), mb: Number(m[1]) / 1024, life: this.life });
    } catch {
      // the process just went away
    }
  }

  async stop(): Promise<void> {
    if (this.sampler) clearInterval(this.sampler);
    this.sampler = null;
    for (const g of this.gpus) this.signal(g.agent, 'SIGCONT');
    await this.procs.killAll();
    await this.redis?.stop();
  }

  logs(): string {
    return this.procs.logs();
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
