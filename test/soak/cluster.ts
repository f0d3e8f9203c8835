/**
 * Everything a soak runs, on loopback: the control plane (`node bin/comfy-multi.js serve`, the
 * compiled build, or `src/cli/index.ts` through tsx when no fresh build exists), a private
 * redis-server with AOF for `--store redis`, and per GPU one ComfyUI stand-in (with its execution
 * record) plus one worker agent. Each piece can be killed, frozen and restarted; the control
 * plane's resident memory is sampled throughout.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ExecutionRecord } from '../support/comfyui-standin/exec-log.js';
import { Processes, waitFor, type Proc } from '../support/processes.js';
import { freePort, startRedisServer, type RedisServerHandle } from '../support/redis-server.js';
import {
  apiJson,
  cliCommand,
  initUsers,
  planGpus,
  readExecutions,
  rssMb,
  runAgent,
  runStandin,
  sleep,
  workerTokens,
  type CliCommand,
  type LocalGpu,
} from '../support/serve-pieces.js';

export { sleep };

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

export type Gpu = LocalGpu;

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

  private cli(): CliCommand {
    return cliCommand(this.opts.build === 'compiled');
  }

  private env(): Record<string, string> {
    return {
      DATA_DIR: this.dataDir,
      HOST: '127.0.0.1',
      PORT: String(this.port),
      LOG_LEVEL: 'warn',
      ADMIN_PASSWORD,
      API_TOKENS: `soak:${this.apiToken}`,
      WORKER_TOKENS: workerTokens(this.gpus),
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
    this.gpus.push(...(await planGpus(this.opts.dir, this.opts.workers)));
    await this.startControlPlane();
    // The participants file as `users init` writes it (the same reader the CLI uses).
    this.passwords = await initUsers(
      this.procs,
      this.cli(),
      this.env(),
      this.opts.users,
      join(this.opts.dir, 'participants.txt'),
    );
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
    await runStandin(this.procs, g, this.opts.dir);
  }

  startAgent(g: Gpu): void {
    runAgent(this.procs, this.cli(), g, {
      server: this.url,
      logLevel: 'warn',
      extraArgs: ['--prefetch', '1'],
    });
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
    return apiJson<T>(this.url, this.apiToken, method, path, 10_000);
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
    return readExecutions(this.gpus);
  }

  // ---- memory -------------------------------------------------------------------------------------

  private sample(): void {
    const cp = this.cp;
    if (!cp || cp.child.exitCode !== null || cp.child.signalCode !== null) return;
    const mb = rssMb(cp.child.pid);
    if (mb !== null) this.rss.push({ t: Date.now(), mb, life: this.life });
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
