/**
 * `--exit-when-idle`: an ephemeral worker ends itself after a stretch without work, so a GPU
 * started on demand stops billing even when the control plane that started it is gone (the
 * autoscaler normally stops it earlier). "Work" is anything held: a job in any state, or a finished
 * job whose report still waits for the control plane's acknowledgement — leaving then would lose it.
 */
export interface IdleWatchOptions {
  idleMs: number;
  /** Whether the agent holds anything now. */
  busy: () => boolean;
  /** Called once, when the agent has held nothing for `idleMs`. */
  onIdle: () => void;
  clock?: () => number;
  /** How often to look; default a quarter of `idleMs`, between 100 ms and 5 s. */
  checkMs?: number;
}

export class IdleWatch {
  private idleSince: number;
  private timer: NodeJS.Timeout | undefined;
  private fired = false;
  private readonly clock: () => number;

  constructor(private readonly opts: IdleWatchOptions) {
    this.clock = opts.clock ?? Date.now;
    this.idleSince = this.clock();
  }

  start(): void {
    if (this.timer) return;
    const every = this.opts.checkMs ?? Math.min(5000, Math.max(100, Math.floor(this.opts.idleMs / 4)));
    this.idleSince = this.clock();
    this.timer = setInterval(() => this.check(), every);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Milliseconds without work so far (0 while busy). */
  idleForMs(): number {
    return this.opts.busy() ? 0 : this.clock() - this.idleSince;
  }

  check(): void {
    if (this.fired) return;
    const now = this.clock();
    if (this.opts.busy()) {
      this.idleSince = now;
      return;
    }
    if (now - this.idleSince >= this.opts.idleMs) {
      this.fired = true;
      this.stop();
      this.opts.onIdle();
    }
  }
}
