/**
 * Whole-store export and import for SQLite (see `StateRecord` in ../types.ts).
 *
 * Export reads from a connection of its own inside one read transaction, so the records are one
 * consistent snapshot (WAL readers never block the writer, nor the writer them); an in-memory
 * database is copied with `serialize()` first.
 *
 * Import runs in one IMMEDIATE transaction: jobs, accounts, tokens, blobs, settings and serve
 * state are written as they stream in, then `user_state` (counts, GPU time, activity, head keys)
 * is rebuilt from the jobs and checked with `checkUserState`; any problem rolls everything back.
 */
import Database from 'better-sqlite3';
import { AppError } from '../../errors.js';
import {
  priorityRank,
  type Account,
  type ImportCounts,
  type ImportOptions,
  type Job,
  type QueueSettings,
  type StateRecord,
  type WorkerToken,
} from '../types.js';
import { ImportTracker, STATE_FORMAT, STATE_VERSION, notEmptyError, toAsync } from '../state-records.js';
import { Accounts, Blobs } from './accounts.js';
import { JOB_SELECT, toJob, type JobRow } from './rows.js';
import { mapErrors } from './support.js';
import { checkUserState } from './user-state.js';

/** A read-only connection holding one snapshot of `db`, for exporting. */
function snapshotConnection(db: Database.Database, path: string): Database.Database {
  if (db.memory || path === ':memory:' || path === '') return new Database(db.serialize());
  const snap = new Database(path, { readonly: true, fileMustExist: true });
  snap.pragma('busy_timeout = 5000');
  return snap;
}

export async function* exportSqliteState(db: Database.Database, path: string): AsyncGenerator<StateRecord> {
  const snap = snapshotConnection(db, path);
  try {
    snap.exec('BEGIN');
    const meta = snap.prepare('SELECT seq, front, serve, settings FROM meta WHERE id = 1').get() as {
      seq: number;
      front: number;
      serve: number;
      settings: string | null;
    };
    yield {
      type: 'header',
      format: STATE_FORMAT,
      version: STATE_VERSION,
      backend: 'sqlite',
      exportedAt: Date.now(),
    };
    yield { type: 'counters', seq: meta.seq, front: meta.front, serve: meta.serve };
    yield {
      type: 'settings',
      settings: meta.settings === null ? null : (JSON.parse(meta.settings) as QueueSettings),
    };
    for (const account of new Accounts(snap).list()) yield { type: 'account', account };
    for (const token of new Accounts(snap).listTokens()) yield { type: 'worker_token', token };
    const blobs = snap
      .prepare('SELECT ns, key, value FROM blobs ORDER BY ns, key')
      .iterate() as IterableIterator<{
      ns: string;
      key: string;
      value: string;
    }>;
    for (const b of blobs) yield { type: 'blob', ns: b.ns, key: b.key, value: b.value };
    const users = snap
      .prepare('SELECT user, last_served FROM user_state WHERE last_served > 0 ORDER BY user')
      .iterate() as IterableIterator<{ user: string; last_served: number }>;
    for (const u of users) yield { type: 'user', user: u.user, lastServed: u.last_served };
    const jobs = snap
      .prepare(`${JOB_SELECT.replace('SELECT', 'SELECT j.served_before,')} ORDER BY j.seq`)
      .iterate() as IterableIterator<JobRow & { served_before: number | null }>;
    for (const row of jobs) {
      const job = plainJob(toJob(row));
      yield row.served_before !== null && job.status === 'running'
        ? { type: 'job', job, servedBefore: row.served_before }
        : { type: 'job', job };
    }
    snap.exec('COMMIT');
  } finally {
    snap.close();
  }
}

/** A job with its lazily parsed prompt made a plain value. */
function plainJob(j: Job): Job {
  return { ...j, prompt: j.prompt };
}

function isEmpty(db: Database.Database): boolean {
  const row = db
    .prepare(
      `SELECT (SELECT seq + front + serve FROM meta WHERE id = 1) AS counters,
        (SELECT settings IS NOT NULL FROM meta WHERE id = 1) AS settings,
        EXISTS (SELECT 1 FROM jobs) OR EXISTS (SELECT 1 FROM accounts) OR EXISTS (SELECT 1 FROM worker_tokens)
          OR EXISTS (SELECT 1 FROM blobs) OR EXISTS (SELECT 1 FROM user_state) AS rows`,
    )
    .get() as { counters: number; settings: number; rows: number };
  return row.counters === 0 && row.settings === 0 && row.rows === 0;
}

function wipe(db: Database.Database): void {
  db.exec(`DELETE FROM jobs; DELETE FROM job_data; DELETE FROM user_state; DELETE FROM accounts;
    DELETE FROM worker_tokens; DELETE FROM blobs;
    UPDATE meta SET seq = 0, front = 0, serve = 0, settings = NULL WHERE id = 1;`);
}

const PENDING_HEAD = (order: string) =>
  `FROM jobs j WHERE j.user = user_state.user AND j.status = 'pending' ORDER BY ${order} LIMIT 1`;
const COUNT = (status: string) =>
  `(SELECT count(*) FROM jobs j WHERE j.user = user_state.user AND j.status = '${status}')`;

/** Recomputes every summary column of `user_state` from `jobs` (the serve state is kept). */
function rebuildUserState(db: Database.Database): void {
  db.exec(`
    INSERT INTO user_state (user) SELECT DISTINCT user FROM jobs WHERE true ON CONFLICT (user) DO NOTHING;
    UPDATE user_state SET
      pending = ${COUNT('pending')}, running = ${COUNT('running')}, completed = ${COUNT('completed')},
      failed = ${COUNT('failed')}, cancelled = ${COUNT('cancelled')},
      gpu_ms = coalesce((SELECT sum(j.finished_at - j.started_at) FROM jobs j WHERE j.user = user_state.user
        AND j.finished_at IS NOT NULL AND j.started_at IS NOT NULL), 0),
      last_activity = (SELECT max(max(j.created_at), coalesce(max(j.finished_at), 0)) FROM jobs j
        WHERE j.user = user_state.user),
      head_front = coalesce((SELECT j.front ${PENDING_HEAD('j.front DESC, j.seq')}), 0),
      head_seq = coalesce((SELECT j.seq ${PENDING_HEAD('j.front DESC, j.seq')}), 0),
      phead_rank = coalesce((SELECT j.prio_rank ${PENDING_HEAD('j.front DESC, j.prio_rank, j.seq')}), 0),
      phead_seq = coalesce((SELECT j.seq ${PENDING_HEAD('j.front DESC, j.prio_rank, j.seq')}), 0);
  `);
}

export async function importSqliteState(
  db: Database.Database,
  records: AsyncIterable<StateRecord> | Iterable<StateRecord>,
  opts: ImportOptions,
): Promise<ImportCounts> {
  if (db.inTransaction) throw new AppError('CONFLICT', 'Another transaction is open on this store.');
  const accounts = new Accounts(db);
  const blobs = new Blobs(db);
  const insertJob = db.prepare(
    `INSERT INTO jobs (seq, id, user, status, priority, prio_rank, front, attempts, skips, worker_id,
       lease_expires_at, created_at, started_at, finished_at, models, served_before)
     VALUES (@seq, @id, @user, @status, @priority, @rank, @front, @attempts, @skips, @workerId,
       @leaseExpiresAt, @createdAt, @startedAt, @finishedAt, @models, @servedBefore)`,
  );
  const insertData = db.prepare(
    'INSERT INTO job_data (seq, error, outputs, metadata, prompt) VALUES (?, ?, ?, ?, ?)',
  );
  const putUser = db.prepare(
    `INSERT INTO user_state (user, last_served) VALUES (?, ?)
     ON CONFLICT (user) DO UPDATE SET last_served = excluded.last_served`,
  );
  const putSettings = db.prepare('UPDATE meta SET settings = ? WHERE id = 1');
  const putCounters = db.prepare('UPDATE meta SET seq = ?, front = ?, serve = ? WHERE id = 1');

  const tracker = new ImportTracker();
  // Waits up to busy_timeout for another writer; then STORE_UNAVAILABLE, like every other write.
  mapErrors(() => db.exec('BEGIN IMMEDIATE'));
  try {
    if (!isEmpty(db)) {
      if (!opts.replace) throw notEmptyError('SQLite');
      wipe(db);
    }
    for await (const r of toAsync(records)) {
      tracker.observe(r);
      switch (r.type) {
        case 'settings':
          putSettings.run(r.settings === null ? null : JSON.stringify(r.settings));
          break;
        case 'account':
          accounts.put(r.account satisfies Account);
          break;
        case 'worker_token':
          accounts.putToken(r.token satisfies WorkerToken);
          break;
        case 'blob':
          blobs.put(r.ns, r.key, r.value);
          break;
        case 'user':
          putUser.run(r.user, r.lastServed);
          break;
        case 'job': {
          const j = r.job;
          insertJob.run({
            seq: j.seq,
            id: j.id,
            user: j.user,
            status: j.status,
            priority: j.priority,
            rank: priorityRank(j.priority),
            front: j.front,
            attempts: j.attempts,
            skips: j.skips,
            workerId: j.workerId,
            leaseExpiresAt: j.leaseExpiresAt,
            createdAt: j.createdAt,
            startedAt: j.startedAt,
            finishedAt: j.finishedAt,
            models: JSON.stringify(j.models),
            servedBefore: r.servedBefore ?? null,
          });
          insertData.run(
            j.seq,
            j.error === null ? null : JSON.stringify(j.error),
            JSON.stringify(j.outputs),
            JSON.stringify(j.metadata),
            JSON.stringify(j.prompt),
          );
          break;
        }
        default:
          break; // header, counters: handled by the tracker
      }
    }
    const c = tracker.finalCounters();
    putCounters.run(c.seq, c.front, c.serve);
    rebuildUserState(db);
    const problems = checkUserState(db);
    if (problems.length > 0) {
      throw new Error(`importState: user_state does not match the jobs: ${problems.slice(0, 5).join('; ')}`);
    }
    db.exec('COMMIT');
  } catch (err) {
    if (db.inTransaction) db.exec('ROLLBACK');
    throw err;
  }
  return tracker.counts;
}
