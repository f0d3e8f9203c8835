/** The prepared statements of job transitions (see `sqlite-store.ts` and `job-transitions.ts`). */
import type Database from 'better-sqlite3';
import type { Priority } from '../types.js';
import type { JobStateRow } from './rows.js';

export type JobStatements = ReturnType<typeof prepareJobStatements>;

export function prepareJobStatements(db: Database.Database) {
  return {
    nextSeq: db.prepare<[number], { seq: number; front: number }>(
      'UPDATE meta SET seq = seq + 1, front = front + ? WHERE id = 1 RETURNING seq, front',
    ),
    nextFront: db
      .prepare<[], number>('UPDATE meta SET front = front + 1 WHERE id = 1 RETURNING front')
      .pluck(),
    insertJob: db.prepare<
      [
        {
          seq: number;
          id: string;
          user: string;
          priority: Priority;
          rank: number;
          front: number;
          now: number;
          models: string;
        },
      ],
      unknown
    >(
      `INSERT INTO jobs (seq, id, user, status, priority, prio_rank, front, created_at, models)
       VALUES (@seq, @id, @user, 'pending', @priority, @rank, @front, @now, @models)`,
    ),
    insertData: db.prepare<[number, string, string], unknown>(
      'INSERT INTO job_data (seq, metadata, prompt) VALUES (?, ?, ?)',
    ),
    renew: db.prepare<[number, string, string, number], unknown>(
      `UPDATE jobs SET lease_expires_at = ? WHERE id = ? AND status = 'running' AND worker_id = ? AND attempts = ?`,
    ),
    /** A lapsed attempt taken back by its worker: running again, attempts unchanged. */
    adopt: db.prepare<[string, number, number, number, number], unknown>(
      `UPDATE jobs SET status = 'running', worker_id = ?, lease_expires_at = ?, started_at = ?,
       served_before = ? WHERE seq = ? AND status = 'pending'`,
    ),
    lastServed: db.prepare<[string], number>('SELECT last_served FROM user_state WHERE user = ?').pluck(),
    nextServe: db
      .prepare<[], number>('UPDATE meta SET serve = serve + 1 WHERE id = 1 RETURNING serve')
      .pluck(),
    finish: db.prepare<[string, number, number], unknown>(
      'UPDATE jobs SET status = ?, finished_at = ?, lease_expires_at = NULL WHERE seq = ?',
    ),
    /** Back to pending at the old place; the first parameter is how many attempts to uncount. */
    requeue: db.prepare<[number, number], unknown>(
      `UPDATE jobs SET status = 'pending', attempts = attempts - ?, worker_id = NULL, lease_expires_at = NULL,
       started_at = NULL WHERE seq = ?`,
    ),
    setOutputs: db.prepare<[string, number], unknown>('UPDATE job_data SET outputs = ? WHERE seq = ?'),
    setError: db.prepare<[string, number], unknown>('UPDATE job_data SET error = ? WHERE seq = ?'),
    setPriority: db.prepare<[string, number, number], unknown>(
      'UPDATE jobs SET priority = ?, prio_rank = ? WHERE seq = ?',
    ),
    setFront: db.prepare<[number, number], unknown>('UPDATE jobs SET front = ? WHERE seq = ?'),
    expired: db.prepare<[number], JobStateRow>(
      `SELECT seq, user, status, attempts, started_at, served_before FROM jobs INDEXED BY jobs_lease
       WHERE status = 'running' AND lease_expires_at <= ? ORDER BY lease_expires_at, seq`,
    ),
    ping: db.prepare<[], unknown>('SELECT 1'),
  };
}
