/**
 * Fault injection. Tests steer it in-process through `standin.faults`, or from another process
 * through `POST /standin/faults` (same knobs, JSON). The control routes under `/standin/` keep
 * answering while the ComfyUI routes hang or return 503, so a test can always undo a fault.
 */
import { z } from 'zod';

export type UnreachableMode = 'refuse' | '503';

export interface ExecutionErrorFault {
  /** Fail when this node runs. Default: the first node that actually executes. */
  nodeId?: string;
  /** Or: fail at the first node of this class. */
  classType?: string;
  /** Python-style exception type reported in `exception_type`. Default `RuntimeError`. */
  exceptionType?: string;
  /** `exception_message` (ComfyUI appends "\n"). */
  message?: string;
}

export interface FaultSnapshot {
  /** Armed: crash `afterMs` after the next job's first node starts. */
  dieMidJob: { afterMs: number } | null;
  /** Armed: the next accepted prompt freezes the server. */
  hangArmed: boolean;
  /** The server is frozen now (HTTP unanswered, executor stalled). */
  hung: boolean;
  /** Armed for the next prompt that starts executing. */
  executionError: ExecutionErrorFault | null;
  unreachable: false | UnreachableMode;
  /** StandinSleep's duration when its `seconds` input is omitted. */
  delayMs: number;
  /** Every executed node takes at least this long (makes fixture-sized graphs slow enough to interrupt). */
  nodeDelayMs: number;
  /** Size of each SaveVideo file in bytes; 0: the fixture MP4 as it is. */
  videoBytes: number;
  /** A simulated crash happened (the server no longer listens). */
  crashed: boolean;
}

export interface FaultControls {
  /** Arms a crash during the next job: sockets drop, the port stops listening, the job never ends. */
  dieMidJob(opts?: { afterMs?: number }): void;
  /** Arms a freeze: the next prompt is accepted (200), then HTTP and the executor stop answering. */
  hang(): void;
  /** Lifts a freeze (or disarms it); held requests are then answered and the job goes on. */
  unhang(): void;
  /** Arms an execution_error for the next prompt that runs. */
  executionError(fault?: ExecutionErrorFault): void;
  /** `'refuse'`/`true`: stop listening (ECONNREFUSED). `'503'`: answer 503. `false`: back to normal. */
  setUnreachable(mode: boolean | UnreachableMode, opts?: { forMs?: number }): Promise<void>;
  delayMs: number;
  nodeDelayMs: number;
  /** SaveVideo writes files of this many bytes (see media-nodes.ts); 0: the fixture MP4. */
  videoBytes: number;
  /** Disarms everything, restores the knobs, lifts hang/unreachable (a crash needs `standin.restart()`). */
  reset(): Promise<void>;
  snapshot(): FaultSnapshot;
}

/** What the faults need from the server to act. */
export interface FaultActions {
  crash(): void;
  setReachability(mode: false | UnreachableMode): Promise<void>;
  isCrashed(): boolean;
}

/** Body of `POST /standin/faults`. Every key is optional; they apply in the order listed. */
export const FaultRequestSchema = z
  .object({
    reset: z.boolean().optional(),
    delayMs: z.number().nonnegative().optional(),
    nodeDelayMs: z.number().nonnegative().optional(),
    videoBytes: z.number().int().nonnegative().optional(),
    dieMidJob: z.union([z.boolean(), z.object({ afterMs: z.number().nonnegative().optional() })]).optional(),
    hang: z.boolean().optional(),
    executionError: z
      .union([
        z.boolean(),
        z.object({
          nodeId: z.string().optional(),
          classType: z.string().optional(),
          exceptionType: z.string().optional(),
          message: z.string().optional(),
        }),
      ])
      .optional(),
    unreachable: z
      .union([
        z.boolean(),
        z.enum(['refuse', '503']),
        z.object({ mode: z.enum(['refuse', '503']), forMs: z.number().positive().optional() }),
      ])
      .optional(),
  })
  .strict();
export type FaultRequest = z.infer<typeof FaultRequestSchema>;

export class FaultController implements FaultControls {
  delayMs: number;
  nodeDelayMs = 0;
  videoBytes = 0;
  private die: { afterMs: number } | null = null;
  private hangArmed = false;
  private errorFault: ExecutionErrorFault | null = null;
  private unreachable: false | UnreachableMode = false;
  private gate: { promise: Promise<void>; open: () => void } | null = null;
  private restoreTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly actions: FaultActions,
    private readonly defaultDelayMs: number,
  ) {
    this.delayMs = defaultDelayMs;
  }

  dieMidJob(opts: { afterMs?: number } = {}): void {
    this.die = { afterMs: opts.afterMs ?? 0 };
  }

  hang(): void {
    this.hangArmed = true;
  }

  unhang(): void {
    this.hangArmed = false;
    this.gate?.open();
    this.gate = null;
  }

  executionError(fault: ExecutionErrorFault = {}): void {
    this.errorFault = { ...fault };
  }

  async setUnreachable(mode: boolean | UnreachableMode, opts: { forMs?: number } = {}): Promise<void> {
    if (this.restoreTimer) clearTimeout(this.restoreTimer);
    this.restoreTimer = null;
    const next = mode === true ? 'refuse' : mode;
    this.unreachable = next;
    await this.actions.setReachability(next);
    if (next && opts.forMs !== undefined) {
      this.restoreTimer = setTimeout(
        () => void this.setUnreachable(false).catch(() => undefined),
        opts.forMs,
      );
      this.restoreTimer.unref();
    }
  }

  async reset(): Promise<void> {
    this.die = null;
    this.errorFault = null;
    this.nodeDelayMs = 0;
    this.videoBytes = 0;
    this.delayMs = this.defaultDelayMs;
    this.unhang();
    if (this.unreachable || this.restoreTimer) await this.setUnreachable(false);
  }

  snapshot(): FaultSnapshot {
    return {
      dieMidJob: this.die,
      hangArmed: this.hangArmed,
      hung: this.gate !== null,
      executionError: this.errorFault,
      unreachable: this.unreachable,
      delayMs: this.delayMs,
      nodeDelayMs: this.nodeDelayMs,
      videoBytes: this.videoBytes,
      crashed: this.actions.isCrashed(),
    };
  }

  /** Applies a `POST /standin/faults` body. */
  async apply(req: FaultRequest): Promise<void> {
    if (req.reset) await this.reset();
    if (req.delayMs !== undefined) this.delayMs = req.delayMs;
    if (req.nodeDelayMs !== undefined) this.nodeDelayMs = req.nodeDelayMs;
    if (req.videoBytes !== undefined) this.videoBytes = req.videoBytes;
    if (req.dieMidJob !== undefined) {
      if (req.dieMidJob === false) this.die = null;
      else this.dieMidJob(req.dieMidJob === true ? {} : req.dieMidJob);
    }
    if (req.hang !== undefined) {
      if (req.hang) this.hang();
      else this.unhang();
    }
    if (req.executionError !== undefined) {
      if (req.executionError === false) this.errorFault = null;
      else this.executionError(req.executionError === true ? {} : req.executionError);
    }
    if (req.unreachable !== undefined) {
      const u = req.unreachable;
      if (typeof u === 'object')
        await this.setUnreachable(u.mode, u.forMs === undefined ? {} : { forMs: u.forMs });
      else await this.setUnreachable(u);
    }
  }

  // --- hooks used by the server and the executor ---------------------------------------------

  /** 503 mode answers every ComfyUI route with 503. */
  get serviceUnavailable(): boolean {
    return this.unreachable === '503';
  }

  /** Resolves immediately unless the server is frozen. */
  waitWhileHung(): Promise<void> {
    return this.gate?.promise ?? Promise.resolve();
  }

  /** Called after a prompt was accepted and answered: an armed hang closes the gate now. */
  onPromptAccepted(): void {
    if (!this.hangArmed || this.gate) return;
    this.hangArmed = false;
    let open!: () => void;
    const promise = new Promise<void>((resolve) => (open = resolve));
    this.gate = { promise, open };
  }

  /** Called when a job starts: hands out (and disarms) the faults meant for "the next job". */
  onJobStart(): { error: ExecutionErrorFault | null; die: { afterMs: number } | null } {
    const taken = { error: this.errorFault, die: this.die };
    this.errorFault = null;
    this.die = null;
    return taken;
  }

  crashNow(): void {
    this.actions.crash();
  }
}
