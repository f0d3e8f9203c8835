/** Row shapes and their mapping to domain objects. */
import type Database from 'better-sqlite3';
import type { ComfyPrompt, Job, JobError, JobOutput, JobStatus, Priority } from '../types.js';

export interface JobRow {
  seq: number;
  id: string;
  user: string;
  status: JobStatus;
  priority: Priority;
  front: number;
  attempts: number;
  skips: number;
  worker_id: string | null;
  lease_expires_at: number | null;
  created_at: number;
  started_at: number | null;
  finished_at: number | null;
  models: string;
  error: string | null;
  outputs: string;
  metadata: string;
  prompt: string;
}

/** The compact facts transitions look at. */
export interface JobStateRow {
  seq: number;
  user: string;
  status: JobStatus;
  attempts: number;
  started_at: number | null;
  /** The user's `last_served` before the claim that started this job; null when unknown. */
  served_before: number | null;
}

/** Select list for full jobs; append a WHERE clause. */
export const JOB_SELECT = `SELECT j.seq, j.id, j.user, j.status, j.priority, j.front, j.attempts, j.skips,
  j.worker_id, j.lease_expires_at, j.created_at, j.started_at, j.finished_at, j.models,
  d.error, d.outputs, d.metadata, d.prompt
  FROM jobs j JOIN job_data d ON d.seq = j.seq`;

/**
 * Defines `obj[key]` as the JSON `text`, parsed on first read. Prompts are most of a job's bytes
 * and list views rarely look at them, so parsing them eagerly dominated listJobs/pendingInOrder.
 * The property stays enumerable and in place (toEqual, spread, structuredClone and JSON.stringify
 * see a plain value); assigning to it replaces the accessor with the value.
 */
function defineLazyJson<T extends object>(obj: T, key: keyof T & string, text: string): void {
  let parsed: unknown;
  let done = false;
  Object.defineProperty(obj, key, {
    enumerable: true,
    configurable: true,
    get() {
      if (!done) {
        parsed = JSON.parse(text);
        done = true;
      }
      return parsed;
    },
    set(value: unknown) {
      Object.defineProperty(obj, key, { value, writable: true, enumerable: true, configurable: true });
    },
  });
}

export function toJob(r: JobRow): Job {
  const job: Job = {
    id: r.id,
    seq: r.seq,
    user: r.user,
    status: r.status,
    priority: r.priority,
    front: r.front,
    prompt: undefined as unknown as ComfyPrompt,
    models: JSON.parse(r.models) as string[],
    metadata: JSON.parse(r.metadata) as Record<string, unknown>,
    attempts: r.attempts,
    skips: r.skips,
    workerId: r.worker_id,
    leaseExpiresAt: r.lease_expires_at,
    createdAt: r.created_at,
    startedAt: r.started_at,
    finishedAt: r.finished_at,
    error: r.error === null ? null : (JSON.parse(r.error) as JobError),
    outputs: JSON.parse(r.outputs) as JobOutput[],
  };
  defineLazyJson(job, 'prompt', r.prompt);
  return job;
}

/** Opaque listJobs cursor: the seq of the last job on the page. */
export function encodeCursor(seq: number): string {
  return Buffer.from(`s:${seq}`, 'utf8').toString('base64url');
}

export function decodeCursor(cursor: string): number | null {
  const m = /^s:(\d{1,15})$/.exec(Buffer.from(cursor, 'base64url').toString('utf8'));
  return m ? Number(m[1]) : null;
}

/** Reads full jobs by id or seq. */
export class JobReader {
  private readonly byIdStmt: Database.Statement<[string], JobRow>;
  private readonly bySeqStmt: Database.Statement<[number], JobRow>;
  private readonly bySeqsStmt: Database.Statement<[string], JobRow>;
  private readonly stateStmt: Database.Statement<[string], JobStateRow>;

  constructor(db: Database.Database) {
    this.byIdStmt = db.prepare<[string], JobRow>(`${JOB_SELECT} WHERE j.id = ?`);
    this.bySeqStmt = db.prepare<[number], JobRow>(`${JOB_SELECT} WHERE j.seq = ?`);
    this.bySeqsStmt = db.prepare<[string], JobRow>(
      `${JOB_SELECT} WHERE j.seq IN (SELECT value FROM json_each(?))`,
    );
    this.stateStmt = db.prepare<[string], JobStateRow>(
      'SELECT seq, user, status, attempts, started_at, served_before FROM jobs WHERE id = ?',
    );
  }

  byId(id: string): Job | null {
    const r = this.byIdStmt.get(id);
    return r ? toJob(r) : null;
  }

  bySeq(seq: number): Job {
    const r = this.bySeqStmt.get(seq);
    if (!r) throw new Error(`job #${seq} vanished`);
    return toJob(r);
  }

  /** Jobs for the given seqs, in that order (missing ones left out). */
  bySeqs(seqs: readonly number[]): Job[] {
    if (seqs.length === 0) return [];
    const rows = new Map(this.bySeqsStmt.all(JSON.stringify(seqs)).map((r) => [r.seq, r]));
    const out: Job[] = [];
    for (const s of seqs) {
      const r = rows.get(s);
      if (r) out.push(toJob(r));
    }
    return out;
  }

  state(id: string): JobStateRow | null {
    return this.stateStmt.get(id) ?? null;
  }
}
