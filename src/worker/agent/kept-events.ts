/**
 * The job events an agent keeps for sending again (see control-link.ts): each ComfyUI event of a
 * run of an attempt is numbered (`seq`) and kept until the run's report is acknowledged, so that
 * after a reconnect the process the agent lands on gets every one of them (it cannot know which
 * ones the process that died had logged). A run, not an attempt: an attempt handed back keeps its
 * number, and its next run (here or on another worker) numbers anew (`run`: its ComfyUI prompt id).
 */
import type { AgentMessage } from '../protocol.js';

export type JobEvent = Extract<AgentMessage, { type: 'job_event' }>;

/**
 * Events kept per run for sending again (progress is kept as its latest only, so a long video job
 * stays far below it); past it, later events go out once only.
 */
export const MAX_KEPT_EVENTS = 20_000;

/** Events whose latest says all: an earlier one is not kept once a later one came. */
const SUPERSEDED = new Set(['progress', 'progress_state']);

/** The events of one run of an attempt. */
interface KeptRun {
  jobId: string;
  attempt: number;
  run: string | undefined;
  /** The next event's number (numbers of events no longer kept stay taken). */
  next: number;
  /** Kept events by number, in order. */
  events: Map<number, JobEvent>;
  /** Number of the last kept event of each superseded kind. */
  latest: Map<string, number>;
}

export class KeptEvents {
  /** By `<jobId>#<attempt>#<run>`, in the order the runs began. */
  private readonly runs = new Map<string, KeptRun>();

  /** Numbers an event of its run and keeps it (within {@link MAX_KEPT_EVENTS}). */
  number(msg: Omit<JobEvent, 'seq'>): JobEvent {
    const key = `${msg.jobId}#${msg.attempt}#${msg.run ?? ''}`;
    let kept = this.runs.get(key);
    if (!kept) {
      kept = {
        jobId: msg.jobId,
        attempt: msg.attempt,
        run: msg.run,
        next: 0,
        events: new Map(),
        latest: new Map(),
      };
      this.runs.set(key, kept);
    }
    const numbered: JobEvent = { ...msg, seq: kept.next++ };
    const type = msg.event.type;
    if (SUPERSEDED.has(type)) {
      const before = kept.latest.get(type);
      if (before !== undefined) kept.events.delete(before);
      kept.latest.set(type, numbered.seq!);
    }
    if (kept.events.size < MAX_KEPT_EVENTS) kept.events.set(numbered.seq!, numbered);
    return numbered;
  }

  /** Forgets an attempt's kept events: of its one run `run`, else of all its runs. */
  forget(jobId: string, attempt: number, run?: string): void {
    for (const [key, kept] of this.runs) {
      if (kept.jobId === jobId && kept.attempt === attempt && (run === undefined || kept.run === run))
        this.runs.delete(key);
    }
  }

  /** Drops every event but keeps the numbering (a server that takes no numbers; one may later). */
  emptyAll(): void {
    for (const kept of this.runs.values()) kept.events.clear();
  }

  clear(): void {
    this.runs.clear();
  }

  /** Runs with events kept (status, tests). */
  get size(): number {
    return this.runs.size;
  }

  /**
   * Every kept event to send again, run by run in the order they began; runs for whose attempt
   * `keep` says no are forgotten instead.
   */
  *again(keep: (attempt: string) => boolean): Generator<JobEvent> {
    for (const [key, kept] of this.runs) {
      if (!keep(`${kept.jobId}#${kept.attempt}`)) {
        this.runs.delete(key);
        continue;
      }
      yield* kept.events.values();
    }
  }
}
