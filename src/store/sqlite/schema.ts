/**
 * SQLite schema, versioned through `PRAGMA user_version`: migration i (0-based) brings the file to
 * version i + 1. Migrations only ever get appended.
 *
 * Layout, chosen so the hot paths never scan:
 * - `jobs` holds the compact, indexed facts of each job; the bulky JSON (prompt, metadata, outputs,
 *   error) lives in `job_data`, so scans and index look-ups never touch it.
 * - `user_state` holds one row per user: serve state (`last_served`, `running`), per-status counts,
 *   `gpu_ms`, `last_activity`, and the sort keys of the user's head job under both head orders
 *   (`head_*` for fifo/round_robin, `phead_*` for priority). Claim walks its partial indexes in
 *   policy order and stops after a few rows.
 * - `meta` is a single row with the store-wide counters (seq, front, serve) and the settings JSON.
 */
import type Database from 'better-sqlite3';

const V1 = `
CREATE TABLE meta (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  seq INTEGER NOT NULL DEFAULT 0,
  front INTEGER NOT NULL DEFAULT 0,
  serve INTEGER NOT NULL DEFAULT 0,
  settings TEXT
);
INSERT INTO meta (id) VALUES (1);

CREATE TABLE jobs (
  seq INTEGER PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  user TEXT NOT NULL,
  status TEXT NOT NULL,
  priority TEXT NOT NULL,
  prio_rank INTEGER NOT NULL,
  front INTEGER NOT NULL DEFAULT 0,
  attempts INTEGER NOT NULL DEFAULT 0,
  skips INTEGER NOT NULL DEFAULT 0,
  worker_id TEXT,
  lease_expires_at INTEGER,
  created_at INTEGER NOT NULL,
  started_at INTEGER,
  finished_at INTEGER,
  models TEXT NOT NULL DEFAULT '[]'
);
-- Each user's head under headOrder (fifo / round_robin, then priority).
CREATE INDEX jobs_head ON jobs (user, front DESC, seq) WHERE status = 'pending';
CREATE INDEX jobs_head_prio ON jobs (user, front DESC, prio_rank, seq) WHERE status = 'pending';
-- fifo service order: moved jobs first (few), then pending by seq through jobs_status.
CREATE INDEX jobs_front ON jobs (front DESC) WHERE status = 'pending' AND front > 0;
CREATE INDEX jobs_lease ON jobs (lease_expires_at) WHERE status = 'running';
-- listJobs keyset pages.
CREATE INDEX jobs_status ON jobs (status, seq);
CREATE INDEX jobs_user_status ON jobs (user, status, seq);
-- pruneHistory; partial, so enqueue does not touch it.
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;

CREATE TABLE job_data (
  seq INTEGER PRIMARY KEY,
  error TEXT,
  outputs TEXT NOT NULL DEFAULT '[]',
  metadata TEXT NOT NULL DEFAULT '{}',
  prompt TEXT NOT NULL
);
CREATE TRIGGER jobs_delete_data AFTER DELETE ON jobs BEGIN
  DELETE FROM job_data WHERE seq = old.seq;
END;

CREATE TABLE user_state (
  user TEXT PRIMARY KEY,
  last_served INTEGER NOT NULL DEFAULT 0,
  running INTEGER NOT NULL DEFAULT 0,
  pending INTEGER NOT NULL DEFAULT 0,
  completed INTEGER NOT NULL DEFAULT 0,
  failed INTEGER NOT NULL DEFAULT 0,
  cancelled INTEGER NOT NULL DEFAULT 0,
  gpu_ms INTEGER NOT NULL DEFAULT 0,
  last_activity INTEGER,
  head_front INTEGER NOT NULL DEFAULT 0,
  head_seq INTEGER NOT NULL DEFAULT 0,
  phead_rank INTEGER NOT NULL DEFAULT 0,
  phead_seq INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
-- compareHeads per mode, over users with pending jobs.
CREATE INDEX users_fifo ON user_state (head_front DESC, head_seq) WHERE pending > 0;
CREATE INDEX users_rr ON user_state (head_front DESC, last_served, head_seq) WHERE pending > 0;
CREATE INDEX users_prio ON user_state (head_front DESC, phead_rank, last_served, phead_seq) WHERE pending > 0;

CREATE TABLE accounts (
  name TEXT PRIMARY KEY,
  role TEXT NOT NULL,
  password_hash TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  password_version INTEGER NOT NULL
);

CREATE TABLE worker_tokens (
  name TEXT PRIMARY KEY,
  token_hash TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  revoked_at INTEGER
);

CREATE TABLE blobs (
  ns TEXT NOT NULL,
  key TEXT NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY (ns, key)
);
`;

/**
 * `served_before`: the user's `last_served` just before the claim that started the job, so a job
 * handed back (release, lapsed lease) gives its user their turn back (see `UserDelta.unserve`).
 */
const V2 = `ALTER TABLE jobs ADD COLUMN served_before INTEGER;`;

export const MIGRATIONS: readonly string[] = [V1, V2];
export const SCHEMA_VERSION = MIGRATIONS.length;

/** Sets the per-connection pragmas. WAL is persistent in the file; the rest are per connection. */
export function applyPragmas(db: Database.Database, busyTimeoutMs: number): void {
  db.pragma(`busy_timeout = ${Math.max(0, Math.trunc(busyTimeoutMs))}`);
  if (!db.memory) db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('temp_store = MEMORY');
  db.pragma('cache_size = -32000');
  db.pragma('foreign_keys = OFF');
}

export function schemaVersion(db: Database.Database): number {
  return db.pragma('user_version', { simple: true }) as number;
}

/**
 * Brings the database to {@link SCHEMA_VERSION}. Each step runs in an IMMEDIATE transaction that
 * re-reads the version, so several processes opening one new file at once migrate it exactly once.
 * Refuses a file written by a newer version.
 */
export function migrate(db: Database.Database): number {
  for (;;) {
    const done = db
      .transaction(() => {
        const v = schemaVersion(db);
        if (v > SCHEMA_VERSION) {
          throw new Error(
            `The database has schema version ${v}, newer than this program supports (${SCHEMA_VERSION}). Upgrade comfy-multi.`,
          );
        }
        if (v === SCHEMA_VERSION) return true;
        db.exec(MIGRATIONS[v]!);
        db.pragma(`user_version = ${v + 1}`);
        return false;
      })
      .immediate();
    if (done) return SCHEMA_VERSION;
  }
}
