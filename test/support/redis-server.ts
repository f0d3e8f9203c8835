/**
 * Starts private `redis-server` processes for tests: a free port on 127.0.0.1 (never 6379), no RDB
 * snapshots, a temporary data directory. Used by the global setup (one server for the whole run)
 * and by tests that need a server of their own, e.g. to restart it with AOF on.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants as fsConstants, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { waitForExit } from './processes.js';

export interface RedisServerOptions {
  /** Turn AOF persistence on (`appendonly yes`). Default false. */
  appendonly?: boolean;
  /** Data directory. Default: a fresh temporary directory, removed when the server stops. */
  dir?: string;
  /** TCP port. Default: a free port chosen by the OS (never 6379). */
  port?: number;
  /** Extra `redis-server` arguments, e.g. `['--appendfsync', 'always']`. */
  args?: string[];
  /** How long to wait for the first PONG. Default 10 s. */
  startTimeoutMs?: number;
}

export interface RedisServerHandle {
  /** `redis://127.0.0.1:<port>` */
  url: string;
  port: number;
  /** The data directory (where `appendonlydir/` lives with AOF on). */
  dir: string;
  pid: number;
  /** Graceful stop (SIGTERM: Redis flushes the AOF and exits). Idempotent. */
  stop(): Promise<void>;
  /** Hard crash (SIGKILL): nothing is flushed. Idempotent. */
  kill9(): Promise<void>;
}

const INSTALL_HINT = 'install it: apt-get install redis-server';
const live = new Set<ChildProcess>();
/** Temporary data directories this module created and has not removed yet. */
const ownDirs = new Set<string>();
let exitHookInstalled = false;

/** The `redis-server` binary: `$REDIS_SERVER_BIN`, else the first one on `PATH`, else /usr/bin. */
export function findRedisServer(): string {
  const fromEnv = process.env.REDIS_SERVER_BIN;
  const candidates = fromEnv
    ? [fromEnv]
    : [
        ...(process.env.PATH ?? '')
          .split(path.delimiter)
          .filter(Boolean)
          .map((d) => path.join(d, 'redis-server')),
        '/usr/bin/redis-server',
        '/usr/local/bin/redis-server',
      ];
  for (const c of candidates) {
    try {
      accessSync(c, fsConstants.X_OK);
      return c;
    } catch {
      // try the next one
    }
  }
  throw new Error(
    `redis-server was not found (looked for ${fromEnv ? `$REDIS_SERVER_BIN=${fromEnv}` : 'redis-server on PATH'}); ` +
      `the Redis tests need it: ${INSTALL_HINT}`,
  );
}

/** A port the OS says is free on 127.0.0.1 right now; never 6379. */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const srv = net.createServer();
      srv.unref();
      srv.once('error', reject);
      srv.listen(0, '127.0.0.1', () => {
        const addr = srv.address();
        const p = typeof addr === 'object' && addr ? addr.port : 0;
        srv.close(() => resolve(p));
      });
    });
    if (port > 0 && port !== 6379) return port;
  }
}

/** One raw `PING`; resolves true on `+PONG`, false on anything else (refused, LOADING, timeout). */
function pingOnce(port: number, timeoutMs = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    let buf = '';
    const done = (ok: boolean): void => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(timeoutMs, () => done(false));
    sock.once('error', () => done(false));
    sock.once('connect', () => sock.write('PING\r\n'));
    sock.on('data', (d) => {
      buf += d.toString('utf8');
      if (buf.includes('\r\n')) done(buf.startsWith('+PONG'));
    });
  });
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Never leave a redis-server behind when the test process dies.
  process.once('exit', () => {
    for (const child of live) child.kill('SIGKILL');
    for (const dir of ownDirs) rmSync(dir, { recursive: true, force: true });
  });
}

async function startOnce(opts: RedisServerOptions, port: number): Promise<RedisServerHandle> {
  const bin = findRedisServer();
  const ownDir = opts.dir === undefined;
  const dir = opts.dir ?? mkdtempSync(path.join(os.tmpdir(), 'comfy-multi-redis-'));
  if (ownDir) ownDirs.add(dir);
  const args = [
    '--port', String(port),
    '--bind', '127.0.0.1',
    '--protected-mode', 'yes',
    '--save', '',
    '--appendonly', opts.appendonly ? 'yes' : 'no',
    '--dir', dir,
    '--daemonize', 'no',
    '--logfile', '',
    '--loglevel', 'warning',
    ...(opts.args ?? []),
  ]; // prettier-ignore
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  installExitHook();
  let output = '';
  const collect = (d: Buffer): void => {
    output = (output + d.toString('utf8')).slice(-4000);
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  let spawnError: Error | undefined;
  child.once('error', (err) => {
    spawnError = err;
  });
  child.once('exit', () => live.delete(child));

  const cleanupDir = (): void => {
    if (!ownDir) return;
    rmSync(dir, { recursive: true, force: true });
    ownDirs.delete(dir);
  };

  const deadline = Date.now() + (opts.startTimeoutMs ?? 10_000);
  for (;;) {
    if (spawnError) {
      cleanupDir();
      throw new Error(`could not run ${bin}: ${spawnError.message} (${INSTALL_HINT})`);
    }
    if (child.exitCode !== null || child.signalCode !== null) {
      cleanupDir();
      throw new Error(`redis-server on port ${port} exited during start-up:\n${output.trim()}`);
    }
    if (await pingOnce(port)) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      await waitForExit(child, 5000);
      cleanupDir();
      throw new Error(`redis-server on port ${port} did not answer PING in time:\n${output.trim()}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }

  const terminate = async (signal: NodeJS.Signals): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill(signal);
      if (!(await waitForExit(child, 15_000))) {
        child.kill('SIGKILL');
        await waitForExit(child, 5000);
      }
    }
    cleanupDir();
  };

  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    dir,
    pid: child.pid ?? -1,
    stop: () => terminate('SIGTERM'),
    kill9: () => terminate('SIGKILL'),
  };
}

/** Starts a private redis-server and waits until it answers PING. */
export async function startRedisServer(opts: RedisServerOptions = {}): Promise<RedisServerHandle> {
  if (opts.port === 6379) throw new Error('refusing to start a test redis-server on 6379');
  if (opts.port !== undefined) return startOnce(opts, opts.port);
  // A free port can be taken between probing and binding; try a few.
  let lastError: unknown;
  for (let i = 0; i < 5; i++) {
    try {
      return await startOnce(opts, await freePort());
    } catch (err) {
      lastError = err;
      if (!(err instanceof Error) || !/address already in use|bind/i.test(err.message)) throw err;
    }
  }
  throw lastError;
}
