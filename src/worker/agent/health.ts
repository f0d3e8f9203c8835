/**
 * ComfyUI liveness: probes `/system_stats` with a timeout on a steady beat (this is a health
 * check, not a work loop) and at once when something hints at trouble (the ComfyUI socket closed,
 * a request failed). `failuresToUnhealthy` consecutive failures mark ComfyUI unhealthy; one good
 * answer marks it healthy again.
 */
import type { Logger } from 'pino';
import type { SystemStats } from '../../comfy/protocol.js';

export interface HealthOptions {
  probe: (timeoutMs: number) => Promise<SystemStats>;
  logger: Logger;
  /** Between probes. Default 2000 ms. */
  intervalMs: number;
  /** Per probe. Default 3000 ms. */
  timeoutMs: number;
  /** Default 2. */
  failuresToUnhealthy: number;
  onHealthy: (stats: SystemStats) => void;
  onUnhealthy: (reason: string) => void;
  /** Every successful probe (fresh VRAM figures for heartbeats). */
  onStats?: (stats: SystemStats) => void;
}

export class HealthMonitor {
  private healthy: boolean | null = null;
  private failures = 0;
  private timer: NodeJS.Timeout | undefined;
  private inFlight: Promise<void> | null = null;
  private stopped = true;
  private lastError: string | null = null;

  constructor(private readonly opts: HealthOptions) {}

  get isHealthy(): boolean {
    return this.healthy === true;
  }

  get error(): string | null {
    return this.lastError;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    void this.probeNow();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  /** Probes now (joining a probe already running); resolves when it is done. */
  probeNow(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    this.inFlight ??= this.runProbe().finally(() => {
      this.inFlight = null;
      if (!this.stopped) {
        clearTimeout(this.timer);
        // A first failure while healthy is checked again soon rather than a full interval later.
        const soon = this.healthy === true && this.failures > 0;
        this.timer = setTimeout(
          () => void this.probeNow(),
          soon ? Math.min(500, this.opts.intervalMs) : this.opts.intervalMs,
        );
      }
    });
    return this.inFlight;
  }

  /** Something failed talking to ComfyUI: count it like a failed probe and probe again at once. */
  suspect(reason: string): void {
    this.lastError = reason;
    void this.probeNow();
  }

  private async runProbe(): Promise<void> {
    try {
      const stats = await this.opts.probe(this.opts.timeoutMs);
      this.failures = 0;
      this.lastError = null;
      this.opts.onStats?.(stats);
      if (this.healthy !== true) {
        this.healthy = true;
        this.opts.onHealthy(stats);
      }
    } catch (err) {
      this.failures++;
      this.lastError = (err as Error).message;
      const threshold = this.healthy === null ? 1 : this.opts.failuresToUnhealthy;
      if (this.healthy !== false && this.failures >= threshold) {
        this.healthy = false;
        this.opts.onUnhealthy(this.lastError);
      } else if (this.healthy !== false) {
        this.opts.logger.debug({ err: this.lastError, failures: this.failures }, 'ComfyUI probe failed');
      }
    }
  }
}
