/**
 * Resuming a participant's `/ws` after a reconnect on any process (several processes, see
 * src/cluster/event-log.ts): each socket's cursor (what it was handed of its owner's event log) is
 * kept in Redis per (user, clientId); a socket that comes back with the same clientId first gets
 * the logged events of its jobs it was not handed, then live ones.
 *
 * The promise: an event counts as handed once the socket wrote it to the connection (the `ws` send
 * callback), and its cursor is saved right after: on the next turn of the event loop, so the events
 * handed in one turn cost one write (and at once when the socket closes). So after a reconnect
 * nothing logged is missed (within the log's length and time limits); an event handed while its
 * cursor's write was still on its way to Redis when the process holding the socket was killed (-9)
 * may come a second time (a window of one Redis round trip; it was 200 ms when saves were
 * batched by time, and the proof test's kill -9s then showed such repeats). A replayed event never
 * comes twice on the new socket: live events already replayed are skipped.
 */
import type { Logger } from 'pino';
import { compareIds, wanted, type EventCursor, type EventLog } from '../cluster/event-log.js';
import type { JobStore } from '../store/types.js';
import { clientIdOf } from './history-shape.js';

/** Most entries replayed at once (the log keeps about 2000 per participant). */
const REPLAY_MAX = 5000;
/** Writers remembered per cursor (one per process that ever ran this participant's jobs). */
const MAX_WRITERS = 64;

export interface Missed {
  jobId: string;
  id: string;
  from: string;
  event: { type: string; data: unknown };
}

/** One socket's resume state. */
export class SocketCursor {
  /** Null until loaded; marks made meanwhile are kept in `early`. */
  cursor: EventCursor | null = null;
  private readonly early: Record<string, string> = {};
  private timer: NodeJS.Immediate | null = null;
  /** A cursor write is on its way to Redis. */
  private saving = false;
  private dirty = false;
  private closed = false;

  constructor(
    private readonly log: EventLog,
    readonly user: string,
    readonly clientId: string,
    private readonly logger: Logger,
  ) {}

  /**
   * The log's last id when this socket read it to catch up (at open, after a link outage): every
   * entry up to it was either handed to this clientId before or replayed then.
   */
  private covered: string | null = null;

  /**
   * Should this socket be handed an entry read back from the log after a process lost it live
   * (`recovered`)? Its writer's mark cannot tell (later entries may have come live first), but an
   * entry the socket's own catch-up read covered was dealt with then: handed on an earlier
   * connection, or replayed.
   */
  wantsRecovered(id: string, from: string): boolean {
    const mark = this.sent[from];
    if (mark !== undefined && compareIds(id, mark) === 0) return false;
    return this.covered === null || compareIds(id, this.covered) > 0;
  }

  /** Should this socket be handed this live entry (not replayed to it already)? */
  wants(id: string, from: string): boolean {
    const mark = (this.cursor ? this.cursor.w : this.early)[from];
    return (mark === undefined || compareIds(id, mark) > 0) && this.notSent(id, from);
  }

  /**
   * Per writer, the last entry given to the socket to send, marked at once: {@link handed} comes
   * only once the write completed, and an entry arriving live meanwhile (or replayed) must not
   * go out a second time.
   */
  private readonly sent: Record<string, string> = {};

  /** The socket is about to send entry `id` of writer `from` (see {@link handed} for after). */
  sending(id: string, from: string): void {
    const mark = this.sent[from];
    if (mark === undefined || compareIds(id, mark) > 0) this.sent[from] = id;
  }

  private notSent(id: string, from: string): boolean {
    const mark = this.sent[from];
    return mark === undefined || compareIds(id, mark) > 0;
  }

  /** The socket wrote entry `id` of writer `from` to its connection. */
  handed(id: string, from: string): void {
    const w = this.cursor ? this.cursor.w : this.early;
    const mark = w[from];
    if (mark !== undefined && compareIds(id, mark) <= 0) return;
    w[from] = id;
    if (!this.cursor) return;
    this.dirty = true;
    this.scheduleSave();
  }

  /**
   * Saves on the next turn, one write at a time: marks made while a write is on its way go in the
   * next one, so a busy socket costs one write per Redis round trip, not one per event.
   */
  private scheduleSave(): void {
    if (this.timer || this.saving || this.closed) return;
    this.timer = setImmediate(() => {
      this.timer = null;
      this.saving = true;
      void this.save().finally(() => {
        this.saving = false;
        if (this.dirty) this.scheduleSave();
      });
    });
  }

  /**
   * Loads (or starts) the cursor and returns the logged entries of `user`'s jobs this clientId was
   * not handed (see {@link missed}); none for a clientId seen for the first time.
   */
  async open(store: JobStore): Promise<Missed[]> {
    const stored = await this.log.loadCursor(this.user, this.clientId);
    const cursor: EventCursor = stored ?? { base: await this.log.head(this.user), w: {} };
    for (const [from, id] of Object.entries(this.early)) {
      const mark = cursor.w[from];
      if (mark === undefined || compareIds(id, mark) > 0) cursor.w[from] = id;
    }
    this.cursor = cursor;
    if (!stored) {
      this.covered = cursor.base;
      this.dirty = true;
      await this.save();
      return [];
    }
    return this.missed(store);
  }

  /**
   * The logged entries this socket should have and was not handed: those of its owner's jobs it
   * queued and of jobs queued without a clientId. After a reconnect, and after the link between
   * processes was down (live messages may have been lost).
   */
  async missed(store: JobStore): Promise<Missed[]> {
    const cursor = this.cursor;
    if (!cursor) return [];
    const all = await this.log.after(this.user, cursor.base, REPLAY_MAX);
    const last = all.at(-1)?.id ?? cursor.base;
    if (this.covered === null || compareIds(last, this.covered) > 0) this.covered = last;
    const entries = all.filter((e) => wanted(cursor, e.id, e.from) && this.notSent(e.id, e.from));
    const mine = new Map<string, boolean>();
    for (const e of entries) {
      if (mine.has(e.jobId)) continue;
      const job = await store.getJob(e.jobId).catch(() => null);
      const clientId = job ? clientIdOf(job) : null;
      mine.set(
        e.jobId,
        job !== null && job.user === this.user && (clientId === null || clientId === this.clientId),
      );
    }
    return entries.filter((e) => mine.get(e.jobId));
  }

  /** Saves now if anything changed (the socket closed). */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearImmediate(this.timer);
    this.timer = null;
    await this.save();
  }

  private async save(): Promise<void> {
    if (!this.dirty || !this.cursor) return;
    this.dirty = false;
    const w = this.cursor.w;
    const writers = Object.keys(w);
    if (writers.length > MAX_WRITERS) {
      // Forgetting a writer only means its old entries may be replayed once more.
      writers.sort((a, b) => compareIds(w[a]!, w[b]!));
      for (const from of writers.slice(0, writers.length - MAX_WRITERS)) delete w[from];
    }
    try {
      await this.log.saveCursor(this.user, this.clientId, this.cursor);
    } catch (err) {
      this.dirty = true;
      this.logger.debug({ err, user: this.user }, 'could not save a socket cursor');
    }
  }
}
