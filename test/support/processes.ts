/**
 * Real child processes for end-to-end tests: `node --import tsx <script>` from the repository root,
 * each in its own process group (so a kill reaches its children), output kept for failure messages.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

export interface Proc {
  name: string;
  child: ChildProcess;
  /** stdout and stderr, in order (the last 2,000 chunks). */
  log: string[];
  exited: Promise<number | null>;
}

/** The processes one test file started, so they can all be stopped and their logs shown. */
export class Processes {
  readonly all: Proc[] = [];

  /**
   * Starts `node --import tsx ...args` (`node ...args` with `tsx: false`, e.g. for the compiled
   * `bin/comfy-multi.js`); `stdin`, when given, is written and closed.
   */
  run(
    name: string,
    args: string[],
    env: Record<string, string>,
    stdin?: string,
    opts: { tsx?: boolean } = {},
  ): Proc {
    const nodeArgs = opts.tsx === false ? args : ['--import', 'tsx', ...args];
    const child = spawn(process.execPath, nodeArgs, {
      cwd: ROOT,
      env: { ...process.env, ...env, NODE_ENV: 'test' },
      stdio: [stdin === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
      detached: true,
    });
    if (stdin !== undefined) child.stdin?.end(stdin);
    const log: string[] = [];
    const keep = (chunk: Buffer) => {
      log.push(chunk.toString('utf8'));
      if (log.length > 2000) log.splice(0, log.length - 2000);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    const p = { name, child, log, exited };
    this.all.push(p);
    return p;
  }

  /** Signals the process's whole group (no-op once it has exited). */
  kill(p: Proc, signal: NodeJS.Signals = 'SIGKILL'): void {
    if (p.child.exitCode !== null || p.child.signalCode !== null || !p.child.pid) return;
    try {
      process.kill(-p.child.pid, signal);
    } catch {
      p.child.kill(signal);
    }
  }

  /** SIGTERM, then waits for the exit. */
  async stop(p: Proc): Promise<void> {
    this.kill(p, 'SIGTERM');
    await p.exited;
  }

  /** SIGKILLs everything and waits (at most 5 s each) for the exits. */
  async killAll(): Promise<void> {
    for (const p of this.all) this.kill(p, 'SIGKILL');
    await Promise.all(this.all.map((p) => Promise.race([p.exited, new Promise((r) => setTimeout(r, 5000))])));
  }

  /**
   * Runs `fn`; when it throws, prints the tail of every process's output first (on a failure it
   * helps more than the assertion alone).
   */
  async withLogs(fn: () => Promise<void>): Promise<void> {
    try {
      await fn();
    } catch (err) {
      console.error(this.logs());
      throw err;
    }
  }

  /** The last 40 lines of every process's output; all of it into E2E_LOG_DIR when set. */
  logs(): string {
    const dir = process.env.E2E_LOG_DIR;
    if (dir) {
      mkdirSync(dir, { recursive: true });
      for (const p of this.all) writeFileSync(join(dir, `${p.name}.log`), p.log.join(''));
    }
    return this.all
      .map((p) => `--- ${p.name} ---\n${p.log.join('').split('\n').slice(-40).join('\n')}`)
      .join('\n');
  }
}

/** Bounded polling: calls `fn` every `everyMs` (50) ms until it returns something truthy. */
export async function waitFor<T>(
  fn: () => Promise<T | null | undefined | false> | T | null | undefined | false,
  timeoutMs: number,
  what: string,
  everyMs = 50,
): Promise<T> {
  const until = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > until)
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${String(last)})` : ''}`,
      );
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Whether `child` exited within `timeoutMs` (true at once if it already has). */
export function waitForExit(child: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), timeoutMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}
