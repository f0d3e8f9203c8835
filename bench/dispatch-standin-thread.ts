/** Worker thread: the ComfyUI stand-in with timing taps (see dispatch-threads.ts). */
import { parentPort, workerData } from 'node:worker_threads';
import { startStandin } from '../test/support/comfyui-standin/server.js';
import { PromptQueue } from '../test/support/comfyui-standin/prompt-queue.js';
import { WsHub } from '../test/support/comfyui-standin/ws-hub.js';
import type { QueueItem } from '../test/support/comfyui-standin/types.js';
import { clock, type TapEvent } from './dispatch-threads.js';

const port = parentPort!;
const tell = (e: TapEvent) => port.postMessage(e);

const put = PromptQueue.prototype.put;
PromptQueue.prototype.put = function (this: PromptQueue, item: QueueItem) {
  tell({ kind: 'received', promptId: item[1], at: clock() });
  return put.call(this, item);
};
const sendJson = WsHub.prototype.sendJson;
WsHub.prototype.sendJson = function (this: WsHub, type: string, data: unknown, sid?: string | null) {
  const promptId = (data as { prompt_id?: unknown } | null)?.prompt_id;
  if (typeof promptId === 'string') {
    if (type === 'execution_start') tell({ kind: 'started', promptId, at: clock() });
    else if (type === 'execution_success') tell({ kind: 'finished', promptId, at: clock() });
  }
  return sendJson.call(this, type, data, sid);
};

const standin = await startStandin({ delayMs: (workerData as { delayMs: number }).delayMs });
port.on('message', (m: unknown) => {
  if (m === 'close') void standin.close().then(() => port.postMessage('closed'));
});
port.postMessage({ kind: 'ready', url: standin.url, outputDir: standin.dirs.output });
