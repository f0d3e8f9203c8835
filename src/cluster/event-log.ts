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
/** A job's event keys are kept this long once its attempt is over (see EventLog.settleKeys). */
export const KEYS_AFTER_MS = 10 * 60_000;
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
  /**
   * The event's identity as its worker numbered it (`<jobId>#<attempt>#<seq>`): an agent sends a
   * job's events again after a reconnect (it cannot know which ones the process that died had
   * logged), and an append of a key already logged adds nothing and answers the first entry.
   */
  key?: string;
}

/** Where an appended event sits in the log: its id and the process that wrote it. */
export interface Appended {
  id: string;
  from: string;
  /** The key was logged before (by `from`): nothing was added. */
  duplicate: boolean;
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
  /** Appends one event to `user`'s log (once per `e.key`); resolves to where it sits. */
  append(user: string, e: LogEvent): Promise<Appended>;
  /** Entries of `user`'s log with ids above `after`, oldest first, at most `limit`. */
  after(user: string, after: string, limit: number): Promise<LoggedEvent[]>;
  /** The id of the last entry of `user`'s log, `0-0` when empty. */
  head(user: string): Promise<string>;
  /**
   * A job's attempt is over on its worker's process: its event keys are kept only
   * {@link KEYS_AFTER_MS} more (long enough for the worker's last repeat before it hears the ack).
   */
  settleKeys(jobId: string): Promise<void>;
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
  private readonly keys = new Map<string, { id: string; from: string }>();

  constructor(private readonly maxEntries = LOG_MAX_ENTRIES) {}

  append(user: string, e: LogEvent): Promise<Appended> {
    const seen = e.key === undefined ? undefined : this.keys.get(`${user}\n${e.key}`);
    if (seen) return Promise.resolve({ ...seen, duplicate: true });
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
    if (e.key !== undefined) this.keys.set(`${user}\n${e.key}`, { id, from: e.from });
    return Promise.resolve({ id, from: e.from, duplicate: false });
  }

  after(user: string, after: string, limit: number): Promise<LoggedEvent[]> {
    const log = this.logs.get(user) ?? [];
    return Promise.resolve(log.filter((e) => compareIds(e.id, after) > 0).slice(0, limit));
  }

  head(user: string): Promise<string> {
    return Promise.resolve(this.logs.get(user)?.at(-1)?.id ?? '0-0');
  }

  settleKeys(_jobId: string): Promise<void> {
    return Promise.resolve(); // kept for the process's life: tests only
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

/**
 * KEYS: the user's stream, the job's key hash. ARGV: maxlen, entry, ttl ms, event key, writer.
 * Answers `{id, writer, duplicate}`. The hash maps each event key to `<id> <writer>`.
 */
const APPEND_ONCE = `
local prev = redis.call('HGET', KEYS[2], ARGV[4])
if prev then
  local sp = string.find(prev, ' ', 1, true)
  return {string.sub(prev, 1, sp - 1), string.sub(prev, sp + 1), 1}
end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'm', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[4], id .. ' ' .. ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return {id, ARGV[5], 0}
`;

interface AppendOnce {
  appendEventOnce(...args: string[]): Promise<unknown>;
}

/** The log in Redis streams (STORE=redis), on its own connection. */
export class RedisEventLog implements EventLog {
  private constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
  ) {
    // EVALSHA after the first call: the script's text does not travel with every event.
    redis.defineCommand('appendEventOnce', { lua: APPEND_ONCE, numberOfKeys: 2 });
  }

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

  /** A job's event keys and where each was logged: `<prefix>events:keys:<jobId>`. */
  private keysKey(jobId: string): string {
    return `${this.prefix}events:keys:${jobId}`;
  }

  async append(user: string, e: LogEvent): Promise<Appended> {
    const key = this.key(user);
    if (e.key === undefined) {
      // XADD and PEXPIRE go out in one write (auto-pipelining); the id is XADD's reply.
      const [id] = await Promise.all([
        this.redis.xadd(key, 'MAXLEN', '~', LOG_MAX_ENTRIES, '*', 'm', JSON.stringify(e)),
        this.redis.pexpire(key, LOG_TTL_MS),
      ]);
      return { id: id as string, from: e.from, duplicate: false };
    }
    // One script, so two processes given the same event (the agent sent it again) log it once.
    const r = (await (this.redis as Redis & AppendOnce).appendEventOnce(
      key,
      this.keysKey(e.jobId),
      String(LOG_MAX_ENTRIES),
      JSON.stringify(e),
      String(LOG_TTL_MS),
      e.key,
      e.from,
    )) as [string, string, number];
    return { id: r[0], from: r[1], duplicate: r[2] === 1 };
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

  async settleKeys(jobId: string): Promise<void> {
    await this.redis.pexpire(this.keysKey(jobId), KEYS_AFTER_MS);
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
