/**
 * Talking to the control plane the benchmarks fork (gateway-server.mjs) over its IPC channel.
 */
import type { ChildProcess } from 'node:child_process';

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
