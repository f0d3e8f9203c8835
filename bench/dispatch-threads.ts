/**
 * Helpers for bench/dispatch.ts: runs the ComfyUI stand-in and the worker agent each in their own
 * worker thread (own heap, own event loop, like their own processes in production), so one
 * component's garbage collection does not show up as another's latency.
 *
 * The stand-in thread has timing taps: it wraps two stand-in methods in that thread
 * (`PromptQueue.put` = a `POST /prompt` accepted; `WsHub.sendJson` of `execution_start` and
 * `execution_success`) and reports each with a clock shared by all threads. The stand-in itself
 * is unchanged.
 */
import { Worker } from 'node:worker_threads';

/** Milliseconds on a clock every thread of the process shares. */
export const clock = (): number => performance.timeOrigin + performance.now();

export type TapEvent = { kind: 'received' | 'started' | 'finished'; promptId: string; at: number };

/** Starts `script` (a .ts file next to this one) in a worker thread with tsx loaded. */
export function tsWorker(script: string, workerData: unknown): Worker {
  const url = new URL(script, import.meta.url).href;
  const boot = `import { register } from 'tsx/esm/api'; register(); await import(${JSON.stringify(url)});`;
  return new Worker(boot, { eval: true, workerData });
}

/** Resolves with the first message matching `pred`. */
export function nextMessage<T>(w: Worker, pred: (m: unknown) => m is T, timeoutMs = 30_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      w.off('message', on);
      reject(new Error('no answer from the worker thread'));
    }, timeoutMs);
    const on = (m: unknown) => {
      if (!pred(m)) return;
      clearTimeout(timer);
      w.off('message', on);
      resolve(m);
    };
    w.on('message', on);
  });
}
