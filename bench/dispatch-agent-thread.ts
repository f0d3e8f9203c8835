/** Worker thread: one worker agent (see dispatch-threads.ts). */
import { parentPort, workerData } from 'node:worker_threads';
import { pino } from 'pino';
import { startAgent } from '../src/worker/agent/index.js';

const opts = workerData as {
  serverUrl: string;
  token: string;
  comfyuiUrl: string;
  prefetch: number;
  /** ComfyUI's output folder, when the agent reads outputs from it (`--output-dir`). */
  outputDir?: string;
};
// No frontend or template library mirror: copying (and precompressing) a real ComfyUI's 22 MB
// frontend takes the control plane seconds of CPU, which would land on the first measured jobs.
const agent = startAgent({
  ...opts,
  name: 'bench',
  logger: pino({ level: 'silent' }),
  mirrorFrontend: false,
  mirrorTemplates: false,
});
parentPort!.on('message', (m: unknown) => {
  if (m === 'stop') void agent.stop().then(() => parentPort!.postMessage('stopped'));
});
