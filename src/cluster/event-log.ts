/**
 * The durable per-participant log of job events, so a `/ws` that reconnects (same clientId) to any
 * process gets the ComfyUI events it missed (several processes, STORE=redis).
 *
 * - One log per participant: a Redis stream `<prefix>events:<user>` trimmed to about
 *   {@link LOG_MAX_ENTRIES} entries and expiring {@link LOG_TTL_MS} after its last write. Each
 *   entry is one ComfyUI event a worker relayed (`event` messages of the JobEventBus), written by
 *   the process holding that worker's socket. Preview frames, `worker_done` and endings made up by
 *   a `/ws` hub (worker lost) are live only.
 * - One cursor per (user, clientId), `<prefix>events:cursor:<user>:<clientId>`, expiring
 *   {@link CURSOR_TTL_MS} after the socket last advanced it. See {@link EventCursor}.
 *
 * Stream ids (`<ms>-<seq>`) are assigned by Redis, so they increase in the order the appends
 * reached Redis, not necessarily in the order a process received them live when two processes
 * write the same participant's log at the same moment (two of their jobs on workers held by
 * different processes). What one writer appends and publishes arrives everywhere in its own order,
 * which is why the cursor keeps one position per writer.
 */
import type { Redis } from 'ioredis';
import { createRedisClient, waitUntilReady } from '../store/redis/redis-client.js';

/** Entries kept per participant (approximate, `MAXLEN ~`): minutes of events of a busy participant. */
export const LOG_MAX_ENTRIES = 2000;
/** A participant's log disappears this long after its last event. */
export const LOG_TTL_MS = 6 * 3_600_000;
/** A clientId's cursor disappears this long after it last moved (a tab closed for good). */
export const CURSOR_TTL_MS = 6 * 3_600_000;

/** One ComfyUI event of a job as the owner's socket should get it. */
export interface LogEvent {
  /** The writing process. */
  from: string;
  jobId: string;
  /** The worker that relayed it. */
  workerId: string;
  event: { type: string; data: unknown };
}

export interface LoggedEvent extends LogEvent {
  id: string;
}

/**
 * What one socket (user, clientId) has been handed: every entry with an id above `base` that it
 * should get has been sent to it if and only if its id is at most `w[entry.from]` (each writer's
 * entries reach a process in the writer's order). So the replay after a reconnect is exactly the
 * entries above `base` that are above their writer's mark.
 */
export interface EventCursor {
  /** The log's last id when this clientId first connected (nothing before it is replayed). */
  base: string;
  /** Per writing process: the last id of its entries this socket was handed. */
  w: Record<string, string>;
}

export interface EventLog {
  /** Appends one event to `user`'s log; resolves to its id. */
  append(user: string, e: LogEvent): Promise<string>;
  /** Entries of `user`'s log with ids above `after`, oldest first, at most `limit`. */
  after(user: string, after: string, limit: number): Promise<LoggedEvent[]>;
  /** The id of the last entry of `user`'s log, `0-0` when empty. */
  head(user: string): Promise<string>;
  loadCursor(user: string, clientId: string): Promise<EventCursor | null>;
  saveCursor(user: string, clientId: string, cursor: EventCursor): Promise<void>;
  close(): Promise<void>;
}

/** Compares two stream ids (`<ms>-<seq>`) numerically. */
export function compareIds(a: string, b: string): number {
  const [am, as] = splitId(a);
  const [bm, bs] = splitId(b);
  return am !== bm ? am - bm : as - bs;
}

function splitId(id: string): [number, number] {
  const i = id.indexOf('-');
  return i < 0 ? [Number(id), 0] : [Number(id.slice(0, i)), Number(id.slice(i + 1))];
}

/** Should the socket with this cursor be handed this entry (not handed yet, and after its base)? */
export function wanted(cursor: EventCursor, id: string, from: string): boolean {
  if (compareIds(id, cursor.base) <= 0) return false;
  const mark = cursor.w[from];
  return mark === undefined || compareIds(id, mark) > 0;
}

/** The log in memory: tests that play several processes, and a single process needing no Redis. */
export class MemoryEventLog implements EventLog {
  private lastMs = 0;
  private seq = 0;
  private readonly logs = new Map<string, LoggedEvent[]>();
  private readonly cursors = new Map<string, EventCursor>();

  constructor(private readonly maxEntries = LOG_MAX_ENTRIES) {}

  append(user: string, e: LogEvent): Promise<string> {
    // Ids as Redis makes them: `<ms>-<seq>`, increasing.
    const now = Date.now();
    if (now > this.lastMs) {
      this.lastMs = now;
      this.seq = 0;
    } else this.seq++;
    const id = `${this.lastMs}-${this.seq}`;
    let log = this.logs.get(user);
    if (!log) this.logs.set(user, (log = []));
    log.push({ ...e, id });
    if (log.length > this.maxEntries) log.splice(0, log.length - this.maxEntries);
    return Promise.resolve(id);
  }

  after(user: string, after: string, limit: number): Promise<LoggedEvent[]> {
    const log = this.logs.get(user) ?? [];
    return Promise.resolve(log.filter((e) => compareIds(e.id, after) > 0).slice(0, limit));
  }

  head(user: string): Promise<string> {
    return Promise.resolve(this.logs.get(user)?.at(-1)?.id ?? '0-0');
  }

  loadCursor(user: string, clientId: string): Promise<EventCursor | null> {
    const c = this.cursors.get(`${user}\n${clientId}`);
    return Promise.resolve(c ? structuredClone(c) : null);
  }

  saveCursor(user: string, clientId: string, cursor: EventCursor): Promise<void> {
    this.cursors.set(`${user}\n${clientId}`, structuredClone(cursor));
    return Promise.resolve();
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** The log in Redis streams (STORE=redis), on its own connection. */
export class RedisEventLog implements EventLog {
  private constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
  ) {}

  static async open(opts: {
    url: string;
    prefix: string;
    onError?: (err: unknown) => void;
  }): Promise<RedisEventLog> {
    // A short command timeout: while Redis is away, events still reach live sockets (unlogged)
    // instead of queueing behind appends that wait for it.
    const redis = createRedisClient(opts.url, {
      name: 'events',
      onError: opts.onError,
      commandTimeoutMs: 1000,
    });
    try {
      await waitUntilReady(redis, opts.url, 5000);
    } catch (err) {
      redis.disconnect();
      throw err;
    }
    return new RedisEventLog(redis, opts.prefix);
  }

  private key(user: string): string {
    return `${this.prefix}events:${user}`;
  }

  private cursorKey(user: string, clientId: string): string {
    return `${this.prefix}events:cursor:${user}:${clientId}`;
  }

  async append(user: string, e: LogEvent): Promise<string> {
    const key = this.key(user);
    // XADD and PEXPIRE go out in one write (auto-pipelining); the id is XADD's reply.
    const [id] = await Promise.all([
      this.redis.xadd(key, 'MAXLEN', '~', LOG_MAX_ENTRIES, '*', 'm', JSON.stringify(e)),
      this.redis.pexpire(key, LOG_TTL_MS),
    ]);
    return id as string;
  }

  async after(user: string, after: string, limit: number): Promise<LoggedEvent[]> {
    const rows = await this.redis.xrange(this.key(user), `(${after}`, '+', 'COUNT', limit);
    const out: LoggedEvent[] = [];
    for (const [id, fields] of rows) {
      const i = fields.indexOf('m');
      if (i < 0 || i + 1 >= fields.length) continue;
      try {
        out.push({ ...(JSON.parse(fields[i + 1]!) as LogEvent), id });
      } catch {
        /* a foreign or damaged entry: skipped */
      }
    }
    return out;
  }

  async head(user: string): Promise<string> {
    const rows = await this.redis.xrevrange(this.key(user), '+', '-', 'COUNT', 1);
    return rows[0]?.[0] ?? '0-0';
  }

  async loadCursor(user: string, clientId: string): Promise<EventCursor | null> {
    const raw = await this.redis.get(this.cursorKey(user, clientId));
    if (!raw) return null;
    try {
      const c = JSON.parse(raw) as EventCursor;
      return typeof c.base === 'string' && typeof c.w === 'object' && c.w !== null ? c : null;
    } catch {
      return null;
    }
  }

  async saveCursor(user: string, clientId: string, cursor: EventCursor): Promise<void> {
    await this.redis.set(this.cursorKey(user, clientId), JSON.stringify(cursor), 'PX', CURSOR_TTL_MS);
  }

  async close(): Promise<void> {
    await this.redis.quit().catch(() => this.redis.disconnect());
  }
}
