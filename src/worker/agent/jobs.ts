/**
 * The jobs an agent holds, by `(jobId, attempt)` and by the ComfyUI `prompt_id` it gave each
 * attempt, plus tombstones: prompt ids of attempts the agent gave up (cancelled, released,
 * forgotten) so late ComfyUI events for them are ignored and, should ComfyUI still start one, it
 * is interrupted at once.
 */
import type { ComfyPrompt, JobError, JobOutput } from '../../store/types.js';

/**
 * Why a job's work in progress stops: one error for all, since `abort()` without a reason makes a
 * fresh AbortError, stack trace and all, for every job that ends (0.04 ms each on a busy agent).
 */
const NO_LONGER_HELD = new DOMException('The agent no longer holds the job.', 'AbortError');

/**
 * - `preparing`: assigned; inputs are moving, not yet in ComfyUI.
 * - `queued`: in ComfyUI's own queue (prefetched), not started.
 * - `running`: ComfyUI sent `execution_start`.
 * - `finishing`: ComfyUI sent its verdict (`execution_success`, `_error`, `_interrupted`); the
 *   report waits for its final `executing {node: null}` and, on success, for every upload.
 */
export type AgentJobState = 'preparing' | 'queued' | 'running' | 'finishing';

export interface AgentJob {
  jobId: string;
  attempt: number;
  user: string;
  prompt: ComfyPrompt;
  extraData: Record<string, unknown>;
  front: boolean;
  /** Fresh per attempt; the agent's key for everything ComfyUI says about this attempt. */
  promptId: string;
  state: AgentJobState;
  /** Files reported by `executed` (also replayed for cached nodes), by `<type>/<subfolder>/<filename>`. */
  outputs: Map<string, JobOutput>;
  /** Aborts input/output transfers when the job is given up. */
  abort: AbortController;
  assignedAt: number;
  startedAt: number | null;
  models: string[];
  /** Uploads of the outputs, started as soon as `executed` names them, by output key. */
  uploads: Map<string, Promise<JobOutput>>;
  /**
   * ComfyUI's events still to relay, in order: an `executed` waits here until its files are
   * stored, so nothing the owner is told about is missing. Null when nothing is waiting.
   */
  relay: Promise<void> | null;
  /** ComfyUI's verdict, once it gave one; reported after its final `executing {node: null}`. */
  outcome: { status: 'success' } | { status: 'failed'; error: JobError } | null;
  /** The report is being made (uploads awaited); a second path to it does nothing. */
  settling: boolean;
  /** Cancelled while ComfyUI ran it: `job_cancelled` is sent once ComfyUI has actually stopped. */
  cancelling: boolean;
}

/** The key of one output in {@link AgentJob.outputs} and {@link AgentJob.uploads}. */
export const outputKey = (o: Pick<JobOutput, 'type' | 'subfolder' | 'filename'>): string =>
  `${o.type}/${o.subfolder}/${o.filename}`;

export const jobKey = (jobId: string, attempt: number): string => `${jobId}#${attempt}`;

const MAX_TOMBSTONES = 1000;

export class JobTable {
  private readonly byKey = new Map<string, AgentJob>();
  private readonly byPrompt = new Map<string, AgentJob>();
  /** promptId → why it was given up; oldest first (bounded). */
  private readonly tombstones = new Map<string, string>();
  private readonly emptyWaiters = new Set<() => void>();

  get size(): number {
    return this.byKey.size;
  }

  add(job: AgentJob): void {
    this.byKey.set(jobKey(job.jobId, job.attempt), job);
    this.byPrompt.set(job.promptId, job);
  }

  get(jobId: string, attempt: number): AgentJob | undefined {
    return this.byKey.get(jobKey(jobId, attempt));
  }

  byPromptId(promptId: string): AgentJob | undefined {
    return this.byPrompt.get(promptId);
  }

  /** Whether `job` is still held (not given up or finished). */
  holds(job: AgentJob): boolean {
    return this.byKey.get(jobKey(job.jobId, job.attempt)) === job;
  }

  /** ComfyUI answered with a different prompt id than the one we chose (an old ComfyUI). */
  rekey(job: AgentJob, promptId: string): void {
    if (this.byPrompt.get(job.promptId) === job) this.byPrompt.delete(job.promptId);
    job.promptId = promptId;
    this.byPrompt.set(promptId, job);
  }

  /** Stops holding the job; with `tombstone`, remembers its prompt id as given up. */
  remove(job: AgentJob, tombstone?: string): void {
    const key = jobKey(job.jobId, job.attempt);
    if (this.byKey.get(key) === job) this.byKey.delete(key);
    if (this.byPrompt.get(job.promptId) === job) this.byPrompt.delete(job.promptId);
    job.abort.abort(NO_LONGER_HELD);
    if (tombstone) this.bury(job.promptId, tombstone);
    if (this.byKey.size === 0) for (const w of [...this.emptyWaiters]) w();
  }

  bury(promptId: string, why: string): void {
    this.tombstones.delete(promptId);
    this.tombstones.set(promptId, why);
    while (this.tombstones.size > MAX_TOMBSTONES) {
      const oldest = this.tombstones.keys().next().value;
      if (oldest === undefined) break;
      this.tombstones.delete(oldest);
    }
  }

  isBuried(promptId: string): boolean {
    return this.tombstones.has(promptId);
  }

  buried(): string[] {
    return [...this.tombstones.keys()];
  }

  all(): AgentJob[] {
    return [...this.byKey.values()].sort((a, b) => a.assignedAt - b.assignedAt);
  }

  /** Resolves when no job is held, or after `timeoutMs`. */
  whenEmpty(timeoutMs: number): Promise<void> {
    if (this.byKey.size === 0 || timeoutMs <= 0) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.emptyWaiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      this.emptyWaiters.add(done);
    });
  }

  /** Ends every pending {@link whenEmpty} wait now. */
  cutWaits(): void {
    for (const w of [...this.emptyWaiters]) w();
  }
}
