/**
 * What the two multi-process harnesses start the same way: the cluster proof's `ServeCluster`
 * (test/support/cluster.ts) and the soak's `Cluster` (test/soak/cluster.ts). How to run the CLI,
 * per GPU one ComfyUI stand-in (with its execution record) and one worker agent, `users init`, the
 * instructor API with a bearer token, and a process's resident memory.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { readParticipantsFile } from '../../src/auth/login-material.js';
import type { ExecutionRecord } from './comfyui-standin/exec-log.js';
import { waitFor, type Processes, type Proc } from './processes.js';
import { freePort } from './redis-server.js';

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** How to run the CLI: `node bin/comfy-multi.js` (the build) or `node --import tsx src/cli/index.ts`. */
export interface CliCommand {
  args: string[];
  tsx: boolean;
}

export function cliCommand(compiled: boolean): CliCommand {
  return compiled ? { args: ['bin/comfy-multi.js'], tsx: false } : { args: ['src/cli/index.ts'], tsx: true };
}

/** One GPU of a harness: a stand-in on its own port and the agent that serves it. */
export interface LocalGpu {
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

/**
 * GPUs 1..count, not started: free ports, worker tokens (named `w<index>`, so the control plane's
 * WORKER_TOKENS is `w1:<token>,…`) and execution logs under `dir`.
 */
export async function planGpus(dir: string, count: number): Promise<LocalGpu[]> {
  const gpus: LocalGpu[] = [];
  for (let i = 1; i <= count; i++) {
    const comfyPort = await freePort();
    gpus.push({
      index: i,
      workerId: `w${i}:gpu-${i}`,
      token: randomBytes(12).toString('hex'),
      comfyUrl: `http://127.0.0.1:${comfyPort}`,
      comfyPort,
      execLog: join(dir, `standin-${i}.executions.jsonl`),
      standin: null,
      agent: null,
    });
  }
  return gpus;
}

/** The WORKER_TOKENS value that accepts every GPU's agent. */
export function workerTokens(gpus: LocalGpu[]): string {
  return gpus.map((g) => `w${g.index}:${g.token}`).join(',');
}

/** Starts GPU `g`'s ComfyUI stand-in (its files under `dir/standin-<index>`) and waits until it answers. */
export async function runStandin(
  procs: Processes,
  g: LocalGpu,
  dir: string,
  extraArgs: string[] = [],
): Promise<void> {
  g.standin = procs.run(
    `standin-${g.index}`,
    [
      'test/support/comfyui-standin/main.ts',
      '--port', String(g.comfyPort),
      '--dir', join(dir, `standin-${g.index}`),
      '--execution-log', g.execLog,
      ...extraArgs,
    ], // prettier-ignore
    {},
  );
  await waitFor(
    async () => (await fetch(`${g.comfyUrl}/system_stats`, { signal: AbortSignal.timeout(2000) })).ok,
    60_000,
    `ComfyUI stand-in ${g.index}`,
  );
}

/** Starts GPU `g`'s worker agent (`comfy-multi worker`) against `server`; it connects on its own. */
export function runAgent(
  procs: Processes,
  cli: CliCommand,
  g: LocalGpu,
  opts: { server: string; logLevel: string; extraArgs?: string[] },
): void {
  g.agent = procs.run(
    `agent-${g.index}`,
    [
      ...cli.args,
      'worker',
      '--server', opts.server,
      '--comfyui', g.comfyUrl,
      '--name', `gpu-${g.index}`,
      ...(opts.extraArgs ?? []),
    ], // prettier-ignore
    { COMFY_MULTI_TOKEN: g.token, LOG_LEVEL: opts.logLevel },
    undefined,
    { tsx: cli.tsx },
  );
}

/**
 * Runs `users init --count <count> --out <out>` with a control plane's environment and returns
 * each participant's password, read from the file as the CLI's own reader does.
 */
export async function initUsers(
  procs: Processes,
  cli: CliCommand,
  env: Record<string, string>,
  count: number,
  out: string,
): Promise<Map<string, string>> {
  const init = procs.run(
    'users-init',
    [...cli.args, 'users', 'init', '--count', String(count), '--out', out],
    env,
    undefined,
    { tsx: cli.tsx },
  );
  if ((await init.exited) !== 0) throw new Error(`users init failed:\n${init.log.join('')}`);
  const passwords = new Map<string, string>();
  for (const [name, entry] of readParticipantsFile(out))
    if (entry.password) passwords.set(name, entry.password);
  return passwords;
}

/** Every execution record of every GPU's stand-in, tagged with its GPU. */
export function readExecutions(gpus: LocalGpu[]): (ExecutionRecord & { gpu: number })[] {
  const out: (ExecutionRecord & { gpu: number })[] = [];
  for (const g of gpus) {
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

/** An instructor API call with a bearer token; anything but 2xx throws with the answer's body. */
export async function apiJson<T>(
  base: string,
  token: string,
  method: string,
  path: string,
  timeoutMs: number,
): Promise<T> {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}` },
    signal: AbortSignal.timeout(timeoutMs),
  });
  if (!res.ok) throw new Error(`${method} ${path} answered ${res.status}: ${await res.text()}`);
  return (await res.json()) as T;
}

/** Resident memory of a process in MB, from /proc (null once it is gone). */
export function rssMb(pid: number | undefined): number | null {
  if (!pid) return null;
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : null;
  } catch {
    return null;
  }
}
