/**
 * Several `comfy-multi serve` processes as one deployment, on loopback, for the cluster proof test
 * (test/e2e/cluster.e2e.test.ts) and `npm run bench -- cluster`: a private redis-server
 * (STORE=redis), s3rver (FILES=s3), N control-plane processes each with its own DATA_DIR (as on N
 * machines: they share only Redis and the bucket), a real nginx in front with the site
 * `renderNginxConfig` prints for N upstreams, and per GPU one ComfyUI stand-in plus one worker
 * agent connected through nginx (so a 1012 close sends it to another process). Each
 * control-plane process can be killed (-9), stopped gracefully (SIGTERM) and started again.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { renderNginxConfig } from '../../src/http/nginx-config.js';
import type { ExecutionRecord } from './comfyui-standin/exec-log.js';
import { NGINX_BIN, writeNginxConfig } from './nginx.js';
import { Processes, waitFor, type Proc } from './processes.js';
import { freePort, startRedisServer, type RedisServerHandle } from './redis-server.js';
import { startS3Server, type S3ServerHandle } from './s3-server.js';
import {
  apiJson,
  cliCommand,
  initUsers,
  planGpus,
  readExecutions,
  rssMb,
  sleep,
  runAgent,
  runStandin,
  workerTokens,
  type CliCommand,
  type LocalGpu,
} from './serve-pieces.js';

export { sleep };

const ADMIN_PASSWORD = 'cluster-admin-password';
const MB = 1024 * 1024;

export interface ClusterOptions {
  /** A fresh temporary folder for everything (data folders, nginx, stand-ins). */
  dir: string;
  processes: number;
  workers: number;
  users: number;
  leaseMs?: number;
  heartbeatMs?: number;
  graceMs?: number;
  logLevel?: string;
  /** Extra environment of every control-plane process. */
  env?: Record<string, string>;
  /** Extra arguments of every stand-in (e.g. a fixed execution delay). */
  standinArgs?: string[];
  /** Run dist/ (`npm run build`) instead of src/ through tsx: what a benchmark should measure. */
  compiled?: boolean;
  /** nginx worker_connections (a bench with 1,000 sockets needs more than the default). */
  nginxConnections?: number;
}

export type ClusterGpu = LocalGpu;

export interface ClusterJobView {
  id: string;
  user: string;
  status: string;
  attempts: number;
  outputs: { filename: string; subfolder: string; type: string }[];
}

export class ServeCluster {
  readonly procs = new Processes();
  readonly gpus: ClusterGpu[] = [];
  readonly apiToken = randomBytes(16).toString('hex');
  readonly passwords = new Map<string, string>();
  /** The control-plane processes by slot; null while a slot is down. */
  readonly serves: (Proc | null)[] = [];
  readonly ports: number[] = [];
  /** How to run the CLI: `node --import tsx src/cli/index.ts`, or `node bin/comfy-multi.js`. */
  private readonly cli: CliCommand;
  /** Starts per slot (1 = first start). */
  readonly lives: number[] = [];
  redis: RedisServerHandle | null = null;
  s3: S3ServerHandle | null = null;
  nginx: ChildProcess | null = null;
  /** Where clients go: nginx. */
  lbUrl = '';
  nginxPort = 0;
  private nginxExited: Promise<unknown> | null = null;
  private readonly prefix = `cm-cluster-${randomBytes(4).toString('hex')}:`;

  constructor(readonly opts: ClusterOptions) {
    this.cli = cliCommand(opts.compiled ?? false);
  }

  /** Plain-HTTP address of one process, bypassing nginx. */
  directUrl(slot: number): string {
    return `http://127.0.0.1:${this.ports[slot]}`;
  }

  env(slot: number): Record<string, string> {
    const o = this.opts;
    return {
      DATA_DIR: join(o.dir, `data-${slot}`),
      HOST: '127.0.0.1',
      PORT: String(this.ports[slot]),
      LOG_LEVEL: o.logLevel ?? 'warn',
      ADMIN_PASSWORD,
      API_TOKENS: `cluster:${this.apiToken}`,
      WORKER_TOKENS: workerTokens(this.gpus),
      TRUST_PROXY: 'true',
      PUBLIC_URL: this.lbUrl,
      LEASE_MS: String(o.leaseMs ?? 10_000),
      HEARTBEAT_MS: String(o.heartbeatMs ?? 1000),
      SHUTDOWN_GRACE_MS: String(o.graceMs ?? 5000),
      FRONTEND_MIRROR: 'false',
      STORE: 'redis',
      REDIS_URL: this.redis!.url,
      REDIS_PREFIX: this.prefix,
      FILES: 's3',
      S3_BUCKET: 'cluster',
      ...this.s3!.env,
      ...o.env,
    };
  }

  async start(): Promise<void> {
    const o = this.opts;
    if (!NGINX_BIN) throw new Error('nginx is not installed: apt-get install nginx (.ci/run does)');
    mkdirSync(o.dir, { recursive: true });
    mkdirSync(join(o.dir, 'redis'), { recursive: true });
    [this.redis, this.s3] = await Promise.all([
      startRedisServer({ appendonly: true, dir: join(o.dir, 'redis') }),
      startS3Server({ buckets: ['cluster'] }),
    ]);
    this.nginxPort = await freePort();
    this.lbUrl = `http://127.0.0.1:${this.nginxPort}`;
    for (let i = 0; i < o.processes; i++) {
      this.ports.push(await freePort());
      this.serves.push(null);
      this.lives.push(0);
    }
    this.gpus.push(...(await planGpus(o.dir, o.workers)));
    // The first process creates the shared state (session secret, settings) before the others race.
    await this.startServe(0);
    await Promise.all(this.serves.map((_, i) => (i === 0 ? undefined : this.startServe(i))));
    await this.startNginx();
    if (o.users > 0) {
      const out = join(o.dir, 'participants.txt');
      const passwords = await initUsers(this.procs, this.cli, this.env(0), o.users, out);
      for (const [name, password] of passwords) this.passwords.set(name, password);
    }
    await Promise.all(this.gpus.map((g) => this.startStandin(g)));
    for (const g of this.gpus) this.startAgent(g);
    await this.waitForWorkers();
  }

  // ---- control-plane processes ------------------------------------------------------------------

  async startServe(slot: number): Promise<void> {
    this.lives[slot]!++;
    const p = this.procs.run(
      `serve-${slot}.${this.lives[slot]}`,
      [...this.cli.args, 'serve'],
      this.env(slot),
      undefined,
      { tsx: this.cli.tsx },
    );
    this.serves[slot] = p;
    await waitFor(
      async () => {
        if (p.child.exitCode !== null)
          throw new Error(`serve ${slot} exited:\n${p.log.join('').slice(-3000)}`);
        return (await fetch(`${this.directUrl(slot)}/health`, { signal: AbortSignal.timeout(2000) })).ok;
      },
      90_000,
      `control-plane process ${slot}`,
    );
  }

  /** kill -9: no draining, connections reset, jobs held by its workers stay claimed. */
  async killServe(slot: number): Promise<void> {
    const p = this.serves[slot];
    this.serves[slot] = null;
    if (!p) return;
    this.procs.kill(p, 'SIGKILL');
    await p.exited;
  }

  /** SIGTERM and wait for the exit (a rolling restart's step); returns the exit code. */
  async stopServe(slot: number): Promise<number | null> {
    const p = this.serves[slot];
    this.serves[slot] = null;
    if (!p) return null;
    this.procs.kill(p, 'SIGTERM');
    return p.exited;
  }

  /** Replaces every process, one at a time (stop, start, healthy), as an upgrade would. */
  async rollingRestart(onStep?: (slot: number, exitCode: number | null) => void): Promise<void> {
    for (let slot = 0; slot < this.serves.length; slot++) {
      const code = await this.stopServe(slot);
      onStep?.(slot, code);
      await this.startServe(slot);
    }
  }

  /** Resident memory of a slot's process in MB. */
  rssMb(slot: number): number | null {
    return rssMb(this.serves[slot]?.child.pid);
  }

  // ---- nginx ------------------------------------------------------------------------------------

  async startNginx(): Promise<void> {
    const dir = join(this.opts.dir, 'nginx');
    const site = renderNginxConfig({
      upstream: this.ports.map((p) => `127.0.0.1:${p}`),
      listen: `127.0.0.1:${this.nginxPort}`,
      serverName: '_',
      bodyLimit: 100 * MB,
      workerUploadLimit: 2048 * MB,
    });
    const connections = this.opts.nginxConnections ?? 1024;
    const args = writeNginxConfig(dir, site, {
      errorLogLevel: 'warn',
      workerConnections: connections,
      rlimitNofile: Math.max(1024, connections * 2 + 64),
    });
    this.nginx = spawn(NGINX_BIN!, args, { cwd: dir, stdio: 'ignore' });
    this.nginxExited = new Promise((r) => this.nginx!.once('exit', r));
    await waitFor(async () => (await fetch(`${this.lbUrl}/health`)).ok, 30_000, 'nginx');
  }

  /** The access log's status codes, counted (what clients behind nginx were answered). */
  nginxStatuses(): Map<number, number> {
    const file = join(this.opts.dir, 'nginx', 'access.log');
    const out = new Map<number, number>();
    if (!existsSync(file)) return out;
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      const m = /" (\d{3}) /.exec(line);
      if (m) out.set(Number(m[1]), (out.get(Number(m[1])) ?? 0) + 1);
    }
    return out;
  }

  nginxErrors(): string {
    const file = join(this.opts.dir, 'nginx', 'error.log');
    return existsSync(file) ? readFileSync(file, 'utf8') : '';
  }

  // ---- GPUs ---------------------------------------------------------------------------------------

  async startStandin(g: ClusterGpu): Promise<void> {
    await runStandin(this.procs, g, this.opts.dir, this.opts.standinArgs);
  }

  /** The agent talks to nginx, not to one process: a restart or kill sends it to another. */
  startAgent(g: ClusterGpu): void {
    runAgent(this.procs, this.cli, g, { server: this.lbUrl, logLevel: this.opts.logLevel ?? 'warn' });
  }

  /**
   * Until every agent is connected somewhere. Asks each process directly and takes the union: a
   * process that does not share worker presence yet lists only the workers on its own sockets.
   */
  async waitForWorkers(timeoutMs = 90_000): Promise<void> {
    await waitFor(
      async () => {
        const seen = new Set<string>();
        for (let slot = 0; slot < this.ports.length; slot++) {
          if (!this.serves[slot]) continue;
          const res = await fetch(`${this.directUrl(slot)}/api/v1/workers`, {
            headers: { authorization: `Bearer ${this.apiToken}` },
            signal: AbortSignal.timeout(5000),
          }).catch(() => null);
          if (!res?.ok) continue;
          const body = (await res.json()) as { workers: { id: string; status: string }[] };
          for (const w of body.workers) if (w.status !== 'offline') seen.add(w.id);
        }
        return this.gpus.every((g) => seen.has(g.workerId));
      },
      timeoutMs,
      'every worker connected',
    );
  }

  /** Every execution record of every stand-in. */
  executions(): (ExecutionRecord & { gpu: number })[] {
    return readExecutions(this.gpus);
  }

  // ---- the instructor API, through nginx ---------------------------------------------------------

  async api<T>(method: string, path: string): Promise<T> {
    return apiJson<T>(this.lbUrl, this.apiToken, method, path, 15_000);
  }

  async workers(): Promise<{ id: string; status: string }[]> {
    return (await this.api<{ workers: { id: string; status: string }[] }>('GET', '/api/v1/workers')).workers;
  }

  async job(id: string): Promise<ClusterJobView | null> {
    const res = await fetch(`${this.lbUrl}/api/v1/jobs/${id}`, {
      headers: { authorization: `Bearer ${this.apiToken}` },
      signal: AbortSignal.timeout(15_000),
    });
    if (res.status === 404) return null;
    if (!res.ok) throw new Error(`GET /api/v1/jobs/${id} answered ${res.status}`);
    return (await res.json()) as ClusterJobView;
  }

  async stop(): Promise<void> {
    await this.procs.killAll();
    if (this.nginx && this.nginx.exitCode === null) {
      this.nginx.kill('SIGTERM');
      await Promise.race([this.nginxExited, sleep(5000)]);
    }
    await this.redis?.stop();
    await this.s3?.stop();
  }

  logs(): string {
    return `${this.procs.logs()}\n--- nginx error.log ---\n${this.nginxErrors().slice(-4000)}`;
  }
}
