/**
 * Outputs announced before they are stored. ComfyUI writes a file before its `executed` names it,
 * so a client may ask `/view` for it the moment it hears of it. Here the file is still on its way
 * from the GPU machine when the owner hears of it (`welcome.earlyOutputs`: the agent relays
 * `executed` and ComfyUI's `execution_success` while it uploads, which takes the upload off every
 * job's round trip), so `/view` waits for a file that is announced and not stored yet, and answers
 * the moment it lands. No timer polls: the upload wakes the waiters.
 *
 * One process only: with several, an upload may land on another process than the one asked, so
 * the server does not offer `earlyOutputs` there and nothing is ever in flight.
 */

/** How long `/view` waits for an announced output at most (its upload may be slow or retried). */
export const IN_FLIGHT_WAIT_MS = 60_000;

/** An entry never settled (its worker vanished mid-upload) is forgotten after this long. */
const STALE_MS = 10 * 60_000;

interface Entry {
  jobId: string;
  since: number;
  waiters: Set<() => void>;
}

export class OutputsInFlight {
  /** File key (`userFileKey`) → the job whose upload will store it. */
  private readonly byKey = new Map<string, Entry>();
  private readonly byJob = new Map<string, Set<string>>();

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

  /** The file is stored: whoever waits for it reads it now. */
  stored(key: string): void {
    const e = this.byKey.get(key);
    if (!e) return;
    this.byKey.delete(key);
    this.byJob.get(e.jobId)?.delete(key);
    for (const wake of e.waiters) wake();
  }

  /** The job is over (recorded, failed, handed back): what never arrived will not; waiters get their 404. */
  settled(jobId: string): void {
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
   * Resolves when the announced file `key` is stored or will not be (true), at once when nothing
   * is on its way under that key (false), or after `timeoutMs`. The caller then looks again.
   */
  wait(key: string, timeoutMs = IN_FLIGHT_WAIT_MS, signal?: AbortSignal): Promise<boolean> {
    const e = this.byKey.get(key);
    if (!e || signal?.aborted) return Promise.resolve(false);
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
