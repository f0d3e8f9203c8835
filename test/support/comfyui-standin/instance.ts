/**
 * One "ComfyUI process lifetime": queue, history, WebSocket hub, executor and the prompt number
 * counter. A simulated restart throws the instance away and builds a fresh one (files stay).
 */
import type { ExecutionLog } from './exec-log.js';
import { Executor } from './executor.js';
import type { FaultController } from './faults.js';
import type { NodeCatalog } from './object-info.js';
import { PromptQueue } from './prompt-queue.js';
import type { DataDirs, QueueItem } from './types.js';
import { WsHub } from './ws-hub.js';

export class Instance {
  readonly queue: PromptQueue;
  readonly hub: WsHub;
  readonly executor: Executor;
  /** ComfyUI's `server.number`: every POST /prompt that reaches validation consumes one. */
  number = 0;

  constructor(
    catalog: NodeCatalog,
    dirs: DataDirs,
    faults: FaultController,
    onStart?: (item: QueueItem) => void,
    executions?: ExecutionLog,
  ) {
    this.hub = new WsHub({
      queueInfo: () => this.queueInfo(),
      runningNodeFor: (sid) => (this.executor.clientId === sid ? this.executor.lastNodeId : null),
    });
    this.queue = new PromptQueue(() => this.hub.sendJson('status', { status: this.queueInfo() }));
    this.executor = new Executor({
      queue: this.queue,
      hub: this.hub,
      catalog,
      dirs,
      faults,
      ...(onStart ? { onStart } : {}),
      ...(executions ? { executions } : {}),
    });
    this.executor.start();
  }

  queueInfo(): { exec_info: { queue_remaining: number } } {
    return { exec_info: { queue_remaining: this.queue.tasksRemaining() } };
  }

  /** Ends this lifetime: the executor stops and every WebSocket is dropped. */
  shutdown(): void {
    this.executor.stop();
    this.hub.terminateAll();
  }
}
