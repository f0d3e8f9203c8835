/**
 * Outputs announced before they are stored. ComfyUI writes a file before its `executed` names it,
 * so a client may ask `/view` for it the moment it hears of it. Here the file is still on its way
 * from the GPU machine when the owner hears of it (`welcome.earlyOutputs`: the agent relays
 * `executed` and ComfyUI's `execution_success` while it uploads, which takes the upload off every
 * job's round trip), so `/view` waits for a file that is announced and not stored yet, and answers
 * the moment it lands. No timer polls: the upload wakes the waiters.
 *
 * The job's success is announced early too: ComfyUI writes a prompt's history entry right after
 * its `execution_success`, so a client polling `/history/<id>` sees the entry from then on. Here
 * the record follows the uploads, so the job's {@link EarlyEnding} (when ComfyUI said success, and
 * the outputs its `executed` events named) stands in for it until the record is there: the queue
 * routes show the job as completed with those outputs, the record then takes the same time, and
 * `/view` waits for any file still on its way. Should the record fail (an upload fails for good),
 * the job shows as failed from then on: a `/ws` client heard `execution_success` already, too.
 *
 * One process only: with several, an upload may land on another process than the one asked, so
 * the server does not offer `earlyOutputs` there and nothing is ever in flight.
 */
import type { JobOutput } from '../store/types.js';

/** A job ComfyUI finished with success whose record (after its uploads) is still to come. */
export interface EarlyEnding {
  jobId: string;
  user: string;
  attempt: number;
  /** When its `execution_success` arrived (the record's `finishedAt`). */
  at: number;
  /** The outputs its `executed` events named, as the participant sees them, in report order. */
  outputs: readonly JobOutput[];
}

/** An entry never settled (its worker vanished mid-upload) is forgotten after this long. */
const STALE_MS = 10 * 60_000;

/**
 * How long `/view` waits for an announced output at most. As long as an entry may stand: the
 * upload of a long video may take minutes, and a client that saw the job completed in `/history`
 * must get the file, not a 404. The job's end (recorded, failed, handed back) wakes every waiter
 * before that anyway, and a client that leaves is not waited for.
 */
export const IN_FLIGHT_WAIT_MS = STALE_MS;

interface Entry {
  jobId: string;
  since: number;
  waiters: Set<() => void>;
  /** The whole file, once its upload's body is in (small files only) and until it is stored. */
  bytes?: InHand;
}

/** A small output's bytes, in hand before they are stored (see {@link OutputsInFlight.arrived}). */
export interface InHand {
  bytes: Buffer;
  /** When they arrived: the file's modification time until it is stored. */
  at: number;
}

export class OutputsInFlight {
  /** File key (`userFileKey`) → the job whose upload will store it. */
  private readonly byKey = new Map<string, Entry>();
  private readonly byJob = new Map<string, Set<string>>();
  /** Job id → its success, announced and not recorded yet. */
  private readonly endings = new Map<string, EarlyEnding>();

  constructor(private readonly clock: () => number = Date.now) {}

  /** The job's worker announced these files (keys as the participant names them) before storing them. */
  expect(jobId: string, keys: readonly string[]): void {
    if (keys.length === 0) return;
    let mine = this.byJob.get(jobId);
    if (!mine) this.byJob.set(jobId, (mine = new Set()));
    for (const key of keys) {
      if (this.byKey.has(key)) continue;
      this.byKey.set(key, { jobId, since: this.clock(), waiters: new Set() });
      mine.add(key);
    }
  }

  /**
   * The upload of an announced file is in, not yet stored: a `/view` serves these bytes at once
   * instead of waiting for the disk (ComfyUI had the file before it announced it too). Waiters
   * wake now. Ignored for a file nobody announced. Returns what is served (store the file with
   * its `at` as modification time, and its validators stay the same once it is stored).
   */
  arrived(key: string, bytes: Buffer): InHand | undefined {
    const e = this.byKey.get(key);
    if (!e) return undefined;
    e.bytes = { bytes, at: this.clock() };
    for (const wake of e.waiters) wake();
    return e.bytes;
  }

  /** The bytes of an announced file that arrived and is not stored yet; undefined otherwise. */
  inHand(key: string): InHand | undefined {
    return this.byKey.get(key)?.bytes;
  }

  /** Storing arrived bytes failed: they are not served (the agent may upload the file again). */
  notStored(key: string): void {
    const e = this.byKey.get(key);
    if (e) delete e.bytes;
  }

  /** The file is stored: whoever waits for it reads it now. */
  stored(key: string): void {
    const e = this.byKey.get(key);
    if (!e) return;
    this.byKey.delete(key);
    this.byJob.get(e.jobId)?.delete(key);
    for (const wake of e.waiters) wake();
  }

  /** ComfyUI finished the job with success; its record follows the uploads. */
  ended(ending: EarlyEnding): void {
    this.endings.set(ending.jobId, ending);
  }

  /** The job's success, announced and not recorded yet. */
  endingOf(jobId: string): EarlyEnding | undefined {
    return this.endings.get(jobId);
  }

  /** The user's jobs whose success is announced and not recorded yet. */
  endingsOf(user: string): EarlyEnding[] {
    const out: EarlyEnding[] = [];
    for (const e of this.endings.values()) if (e.user === user) out.push(e);
    return out;
  }

  /** The job is over (recorded, failed, handed back): what never arrived will not; waiters get their 404. */
  settled(jobId: string): void {
    this.endings.delete(jobId);
    const mine = this.byJob.get(jobId);
    if (!mine) return;
    this.byJob.delete(jobId);
    for (const key of mine) {
      const e = this.byKey.get(key);
      this.byKey.delete(key);
      for (const wake of e?.waiters ?? []) wake();
    }
  }

  /**
   * Resolves when the announced file `key` arrived, is stored or will not be (true), at once when
   * nothing is on its way under that key or it is in hand already (false), or after `timeoutMs`.
   * The caller then looks again.
   */
  wait(key: string, timeoutMs = IN_FLIGHT_WAIT_MS, signal?: AbortSignal): Promise<boolean> {
    const e = this.byKey.get(key);
    if (!e || e.bytes || signal?.aborted) return Promise.resolve(false);
    if (this.clock() - e.since > STALE_MS) {
      this.byKey.delete(key);
      this.byJob.get(e.jobId)?.delete(key);
      return Promise.resolve(false);
    }
    return new Promise<boolean>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        e.waiters.delete(done);
        signal?.removeEventListener('abort', done);
        resolve(true);
      };
      const timer = setTimeout(done, timeoutMs);
      // A `/view` still waiting never holds a stopping server up.
      timer.unref();
      e.waiters.add(done);
      signal?.addEventListener('abort', done, { once: true });
    });
  }

  /** Files announced and not stored yet (tests, metrics). */
  get size(): number {
    return this.byKey.size;
  }

  /** `/view` requests waiting right now (tests, metrics). */
  get waiting(): number {
    let n = 0;
    for (const e of this.byKey.values()) n += e.waiters.size;
    return n;
  }
}
