/**
 * The seed design, for comparison only: a worker that asks for work every 2 s and asks ComfyUI's
 * `/history` every 2 s whether its prompt is done (the earlier Python agent). It claims straight
 * from the queue (standing in for its HTTP poll) and, like the seed, moves no outputs.
 * Generous to the seed: a tick that sees its job finished also asks for the next one at once.
 */
import { randomUUID } from 'node:crypto';
import type { QueueService } from '../src/scheduler/queue-service.js';
import type { Job } from '../src/store/types.js';

export class PollingWorker {
  private timer: NodeJS.Timeout | undefined;
  private current: { job: Job; promptId: string } | null = null;
  private busy = false;
  private readonly clientId = randomUUID();

  constructor(
    private readonly queue: QueueService,
    private readonly comfyUrl: string,
    private readonly pollMs = 2000,
    readonly workerId = 'baseline:poller',
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.tick(), this.pollMs);
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private async tick(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      if (this.current) {
        const { job, promptId } = this.current;
        const res = await fetch(`${this.comfyUrl}/history/${promptId}`);
        const history = (await res.json()) as Record<string, { status?: { status_str?: string } }>;
        const entry = history[promptId];
        if (entry) {
          if (entry.status?.status_str === 'success') await this.queue.complete(job.id, job.attempts, []);
          else await this.queue.fail(job.id, job.attempts, { reason: 'execution_error', message: 'failed' });
          this.current = null;
        }
      }
      if (!this.current) {
        const job = await this.queue.claim(this.workerId, []);
        if (job) {
          const promptId = randomUUID();
          await fetch(`${this.comfyUrl}/prompt`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ prompt: job.prompt, client_id: this.clientId, prompt_id: promptId }),
          });
          this.current = { job, promptId };
        }
      }
    } finally {
      this.busy = false;
    }
  }
}
