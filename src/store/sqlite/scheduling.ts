/**
 * Claim and service order over the indexes, feeding the pure policy only what it needs.
 *
 * claim: walks `user_state` in the mode's `compareHeads` order (a partial index over users with
 * pending jobs) and stops once it has `window` users below their running limit — so the work is
 * O(window + users at their limit), not O(pending jobs) or O(users). Only those users' heads are
 * fetched (indexed `LIMIT 1`, policy columns only) and handed to `selectJob`.
 *
 * pendingInOrder: fifo is two index ranges; the other modes merge the users' head streams, read
 * lazily from the same user index, with a heap keyed like `compareHeads`: O(limit·log limit).
 */
import type Database from 'better-sqlite3';
import { selectJob, type Candidate, type UserServeState } from '../../scheduler/policy.js';
import type { ClaimRequest, Priority, QueueMode, QueueSettings } from '../types.js';
import type { UserState } from './user-state.js';

interface UserRow {
  user: string;
  last_served: number;
  pending: number;
  running: number;
  head_front: number;
  head_seq: number;
  phead_rank: number;
  phead_seq: number;
}

interface HeadRow {
  seq: number;
  id: string;
  user: string;
  priority: Priority;
  front: number;
  models: string;
  skips: number;
}

interface OrderRow {
  seq: number;
  front: number;
  prio_rank: number;
}

const USER_COLS = 'user, last_served, pending, running, head_front, head_seq, phead_rank, phead_seq';
const USERS_ORDER: Record<QueueMode, string> = {
  fifo: 'head_front DESC, head_seq',
  round_robin: 'head_front DESC, last_served, head_seq',
  priority: 'head_front DESC, phead_rank, last_served, phead_seq',
};
const HEAD_ORDER: Record<QueueMode, string> = {
  fifo: 'front DESC, seq',
  round_robin: 'front DESC, seq',
  priority: 'front DESC, prio_rank, seq',
};
/** The index matching each head order; INDEXED BY pins it (the planner has no statistics). */
const HEAD_INDEX: Record<QueueMode, string> = {
  fifo: 'jobs_head',
  round_robin: 'jobs_head',
  priority: 'jobs_head_prio',
};

function perMode<T>(make: (mode: QueueMode) => T): Record<QueueMode, T> {
  return { fifo: make('fifo'), round_robin: make('round_robin'), priority: make('priority') };
}

export class Scheduler {
  private readonly usersInOrder: Record<QueueMode, Database.Statement<[], UserRow>>;
  private readonly head: Record<QueueMode, Database.Statement<[string], HeadRow>>;
  private readonly userJobs: Record<QueueMode, Database.Statement<[string, number, number], OrderRow>>;
  private readonly usersPage: Record<QueueMode, Database.Statement<[number, number], UserRow>>;
  private readonly serveCounter: Database.Statement<[], number>;
  private readonly frontOrder: Database.Statement<[number], number>;
  private readonly seqOrder: Database.Statement<[number], number>;
  private readonly start: Database.Statement<[string, number, number, number, number], unknown>;
  private readonly skip: Database.Statement<[number], unknown>;
  private readonly nextServe: Database.Statement<[], number>;

  constructor(
    db: Database.Database,
    private readonly users: UserState,
  ) {
    this.usersInOrder = perMode((m) =>
      db.prepare<[], UserRow>(
        `SELECT ${USER_COLS} FROM user_state WHERE pending > 0 ORDER BY ${USERS_ORDER[m]}`,
      ),
    );
    this.head = perMode((m) =>
      db.prepare<[string], HeadRow>(
        `SELECT seq, id, user, priority, front, models, skips FROM jobs INDEXED BY ${HEAD_INDEX[m]}
         WHERE user = ? AND status = 'pending' ORDER BY ${HEAD_ORDER[m]} LIMIT 1`,
      ),
    );
    this.userJobs = perMode((m) =>
      db.prepare<[string, number, number], OrderRow>(
        `SELECT seq, front, prio_rank FROM jobs INDEXED BY ${HEAD_INDEX[m]}
         WHERE user = ? AND status = 'pending' ORDER BY ${HEAD_ORDER[m]} LIMIT ? OFFSET ?`,
      ),
    );
    this.usersPage = perMode((m) =>
      db.prepare<[number, number], UserRow>(
        `SELECT ${USER_COLS} FROM user_state WHERE pending > 0 ORDER BY ${USERS_ORDER[m]} LIMIT ? OFFSET ?`,
      ),
    );
    this.serveCounter = db.prepare<[], number>('SELECT serve FROM meta WHERE id = 1').pluck();
    // fifo order is (front DESC, seq): the moved jobs (few), then the rest by seq.
    this.frontOrder = db
      .prepare<[number], number>(
        `SELECT seq FROM jobs INDEXED BY jobs_front
         WHERE status = 'pending' AND front > 0 ORDER BY front DESC LIMIT ?`,
      )
      .pluck();
    this.seqOrder = db
      .prepare<[number], number>(
        `SELECT seq FROM jobs INDEXED BY jobs_status
         WHERE status = 'pending' AND front = 0 ORDER BY seq LIMIT ?`,
      )
      .pluck();
    this.start = db.prepare<[string, number, number, number, number], unknown>(
      `UPDATE jobs SET status = 'running', worker_id = ?, attempts = attempts + 1, lease_expires_at = ?,
       started_at = ?, served_before = ? WHERE seq = ? AND status = 'pending'`,
    );
    this.skip = db.prepare<[number], unknown>('UPDATE jobs SET skips = skips + 1 WHERE seq = ?');
    this.nextServe = db
      .prepare<[], number>('UPDATE meta SET serve = serve + 1 WHERE id = 1 RETURNING serve')
      .pluck();
  }

  /** Picks and starts the next job; returns its seq. Call inside an IMMEDIATE transaction. */
  claim(settings: QueueSettings, req: ClaimRequest): number | null {
    if (settings.paused) return null;
    const mode = settings.mode;
    const useAffinity = req.affinity.window > 1 && req.warmModels.length > 0;
    const want = useAffinity ? Math.trunc(req.affinity.window) : 1;
    const limitFor = (user: string) =>
      settings.userLimits[user]?.maxRunningPerUser ?? settings.limits.maxRunningPerUser;

    const eligible: UserRow[] = [];
    const all: UserRow[] = [];
    for (const row of this.usersInOrder[mode].iterate()) {
      if (req.runnable) {
        const h = this.head[mode].get(row.user);
        if (h && !req.runnable(JSON.parse(h.models) as string[])) continue;
      }
      all.push(row);
      if (row.running < limitFor(row.user)) {
        eligible.push(row);
        if (eligible.length >= want) break;
      }
    }
    // With nobody below the limit, `all` holds every user with pending jobs (the loop ran out).
    const rows = eligible.length > 0 ? eligible : all;
    if (rows.length === 0) return null;

    const seqById = new Map<string, number>();
    const candidates: Candidate[] = [];
    const users = new Map<string, UserServeState>();
    for (const u of rows) {
      const h = this.head[mode].get(u.user);
      if (!h) throw new Error(`user_state says ${u.user} has pending jobs, but none were found`);
      seqById.set(h.id, h.seq);
      candidates.push({
        id: h.id,
        user: h.user,
        seq: h.seq,
        priority: h.priority,
        front: h.front,
        models: JSON.parse(h.models) as string[],
        skips: h.skips,
      });
      users.set(u.user, { lastServed: u.last_served, running: u.running });
    }
    const sel = selectJob({
      mode,
      candidates,
      users,
      limits: settings.limits,
      userLimits: settings.userLimits,
      warmModels: new Set(req.warmModels),
      affinity: req.affinity,
    });
    if (!sel) return null;

    const seq = seqById.get(sel.job.id)!;
    for (const s of sel.skipped) this.skip.run(seqById.get(s.id)!);
    const servedBefore = users.get(sel.job.user)!.lastServed;
    if (this.start.run(req.workerId, req.now + req.leaseMs, req.now, servedBefore, seq).changes !== 1) {
      throw new Error(`job ${sel.job.id} stopped being pending inside the claim transaction`);
    }
    // Its last pending job: no head left to find (the users_* indexes leave it out from now on, and
    // its next enqueue sets the heads afresh), so the four head look-ups are skipped.
    const lastPending = rows.find((r) => r.user === sel.job.user)!.pending <= 1;
    this.users.apply(sel.job.user, { pending: -1, running: 1, served: this.nextServe.get()! }, !lastPending);
    return seq;
  }

  /** Seqs of pending jobs in `serviceOrder`, at most `limit`. */
  pendingOrder(mode: QueueMode, limit: number): number[] {
    if (limit <= 0) return [];
    if (mode === 'fifo') {
      const moved = this.frontOrder.all(limit);
      return moved.length >= limit ? moved : moved.concat(this.seqOrder.all(limit - moved.length));
    }
    const prio = mode === 'priority';

    interface Stream {
      user: string;
      served: number;
      front: number;
      rank: number;
      seq: number;
      buf: OrderRow[] | null;
      pos: number;
      fetched: number;
      batch: number;
    }
    const cmp = (a: Stream, b: Stream) =>
      b.front - a.front || (prio ? a.rank - b.rank : 0) || a.served - b.served || a.seq - b.seq;
    // Users not served yet in this simulation keep their stored keys, so they come straight from
    // the ordered index, a page at a time; users served in it go to a heap with their new keys.
    // Only about `limit` users are ever read.
    let counter = this.serveCounter.get() ?? 0; // >= every user's last_served
    const heap = new Heap<Stream>([], cmp);
    let page: UserRow[] = [];
    let pageAt = 0;
    let offset = 0;
    let untouched: Stream | undefined;
    const peekUntouched = (): Stream | undefined => {
      if (untouched) return untouched;
      if (pageAt >= page.length) {
        page = this.usersPage[mode].all(Math.min(64, limit), offset);
        offset += page.length;
        pageAt = 0;
      }
      const u = page[pageAt];
      if (!u) return undefined;
      untouched = {
        user: u.user,
        served: u.last_served,
        front: u.head_front,
        rank: prio ? u.phead_rank : 0,
        seq: prio ? u.phead_seq : u.head_seq,
        buf: null,
        pos: 0,
        fetched: 0,
        batch: 2,
      };
      return untouched;
    };
    const next = (): Stream | undefined => {
      const u = peekUntouched();
      const h = heap.peek();
      if (u && (!h || cmp(u, h) < 0)) {
        untouched = undefined;
        pageAt++;
        return u;
      }
      return heap.pop();
    };
    // Most users contribute a job or two to a page, so batches start small and double.
    const refill = (s: Stream): OrderRow[] => {
      s.buf = this.userJobs[mode].all(s.user, Math.min(s.batch, limit), s.fetched);
      s.fetched += s.buf.length;
      s.pos = 0;
      s.batch = Math.min(s.batch * 2, 256);
      return s.buf;
    };
    const out: number[] = [];
    while (out.length < limit) {
      const s = next();
      if (!s) break;
      let buf = s.buf ?? refill(s);
      const cur = buf[s.pos];
      if (!cur) continue;
      out.push(cur.seq);
      s.pos++;
      if (s.pos >= buf.length) buf = refill(s);
      const following = buf[s.pos];
      if (!following) continue;
      s.front = following.front;
      s.rank = prio ? following.prio_rank : 0;
      s.seq = following.seq;
      s.served = ++counter;
      heap.push(s);
    }
    return out;
  }
}

/** A minimal binary min-heap. */
class Heap<T> {
  private readonly a: T[];

  constructor(
    items: T[],
    private readonly cmp: (x: T, y: T) => number,
  ) {
    this.a = items;
    for (let i = (this.a.length >> 1) - 1; i >= 0; i--) this.down(i);
  }

  push(x: T): void {
    this.a.push(x);
    let i = this.a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (this.cmp(this.a[i]!, this.a[p]!) >= 0) break;
      [this.a[i], this.a[p]] = [this.a[p]!, this.a[i]!];
      i = p;
    }
  }

  peek(): T | undefined {
    return this.a[0];
  }

  pop(): T | undefined {
    const top = this.a[0];
    const last = this.a.pop();
    if (this.a.length > 0 && last !== undefined) {
      this.a[0] = last;
      this.down(0);
    }
    return top;
  }

  private down(i: number): void {
    const n = this.a.length;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < n && this.cmp(this.a[l]!, this.a[m]!) < 0) m = l;
      if (r < n && this.cmp(this.a[r]!, this.a[m]!) < 0) m = r;
      if (m === i) return;
      [this.a[i], this.a[m]] = [this.a[m]!, this.a[i]!];
      i = m;
    }
  }
}
