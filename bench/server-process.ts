/**
 * Talking to the control plane the benchmarks fork (gateway-server.mjs) over its IPC channel.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/**
 * Forks the compiled control plane (gateway-server.mjs, as `npm start` runs it: tsx alone would
 * add ~30 MB to the RSS measured) on a free port with its data in `dataDir`, logging nothing;
 * `env` adds to or overrides that, `cpuProfDir` writes a CPU profile there. It says `ready`.
 */
export function forkServer(
  dataDir: string,
  env: Record<string, string> = {},
  cpuProfDir?: string,
): ChildProcess {
  return fork(fileURLToPath(new URL('./gateway-server.mjs', import.meta.url)), [], {
    execArgv: cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${cpuProfDir}`] : [],
    env: { ...process.env, DATA_DIR: dataDir, HOST: '127.0.0.1', PORT: '0', LOG_LEVEL: 'silent', ...env },
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  });
}

/**
 * Sends `{ type }` (except for `ready`, which the child sends by itself once listening) and waits
 * up to a minute for the child's message of the same type.
 */
export function ask(child: ChildProcess, type: string): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${type} answer from the server process`)), 60_000);
    const on = (m: Record<string, unknown>) => {
      if (m.type !== type) return;
      clearTimeout(timer);
      child.off('message', on);
      resolve(m);
    };
    child.on('message', on);
    if (type !== 'ready') child.send({ type });
  });
}
