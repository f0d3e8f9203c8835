/**
 * State exports as files: one {@link StateRecord} per line (JSON lines), validated on the way in,
 * plus the bookkeeping both backends share when importing (ordering rules, duplicates, counters).
 *
 * Format `comfy-multi-state`, version 1:
 *
 *     {"type":"header","format":"comfy-multi-state","version":1,"backend":"sqlite","exportedAt":…}
 *     {"type":"counters","seq":1234,"front":7,"serve":980}
 *     {"type":"settings","settings":{…} | null}
 *     {"type":"account","account":{…}}          (one per account)
 *     {"type":"worker_token","token":{…}}       (one per token; only the sha256 hash)
 *     {"type":"blob","ns":"…","key":"…","value":"…"}
 *     {"type":"user","user":"…","lastServed":17}
 *     {"type":"job","job":{…every Job field…}}   (by seq)
 */
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { z } from 'zod';
import { AppError } from '../errors.js';
import {
  JOB_STATUSES,
  PRIORITIES,
  QUEUE_MODES,
  ROLES,
  type ImportCounts,
  type StateRecord,
} from './types.js';

export const STATE_FORMAT = 'comfy-multi-state';
export const STATE_VERSION = 1;

const count = z.number().int().min(0);
const time = z.number().int();
const json = z.record(z.string(), z.unknown());

const limits = z.object({ maxPendingPerUser: count, maxRunningPerUser: count });
const settings = z.object({
  mode: z.enum(QUEUE_MODES),
  paused: z.boolean(),
  limits,
  userLimits: z.record(z.string(), limits.partial()),
});

const job = z.object({
  id: z.string().min(1),
  seq: z.number().int().min(1),
  user: z.string().min(1),
  status: z.enum(JOB_STATUSES),
  priority: z.enum(PRIORITIES),
  front: count,
  prompt: z.record(z.string(), z.object({ class_type: z.string(), inputs: json }).loose()),
  models: z.array(z.string()),
  metadata: json,
  attempts: count,
  skips: count,
  workerId: z.string().nullable(),
  leaseExpiresAt: time.nullable(),
  createdAt: time,
  startedAt: time.nullable(),
  finishedAt: time.nullable(),
  error: z.object({ reason: z.string(), message: z.string() }).loose().nullable(),
  outputs: z.array(
    z
      .object({
        nodeId: z.string(),
        filename: z.string(),
        subfolder: z.string(),
        type: z.enum(['output', 'temp']),
        kind: z.string(),
      })
      .loose(),
  ),
});

/** Validates one record read from a file. */
export const stateRecordSchema = z.discriminatedUnion('type', [
  z.object({
    type: z.literal('header'),
    format: z.literal(STATE_FORMAT),
    version: z.number().int().min(1),
    backend: z.enum(['sqlite', 'redis']),
    exportedAt: time,
  }),
  z.object({ type: z.literal('counters'), seq: count, front: count, serve: count }),
  z.object({ type: z.literal('settings'), settings: settings.nullable() }),
  z.object({
    type: z.literal('account'),
    account: z.object({
      name: z.string().min(1),
      role: z.enum(ROLES),
      passwordHash: z.string(),
      createdAt: time,
      passwordVersion: count,
    }),
  }),
  z.object({
    type: z.literal('worker_token'),
    token: z.object({
      name: z.string().min(1),
      tokenHash: z.string(),
      createdAt: time,
      revokedAt: time.nullable(),
    }),
  }),
  z.object({ type: z.literal('blob'), ns: z.string().min(1), key: z.string(), value: z.string() }),
  z.object({ type: z.literal('user'), user: z.string().min(1), lastServed: count }),
  z.object({ type: z.literal('job'), job, servedBefore: count.optional() }),
]);

/** One record as a line of the file. */
export function encodeStateRecord(r: StateRecord): string {
  return `${JSON.stringify(r)}\n`;
}

/** The records of a JSON-lines export, validated; errors name the line. Blank lines are skipped. */
export async function* readStateRecords(input: Readable): AsyncGenerator<StateRecord> {
  const lines = createInterface({ input, crlfDelay: Infinity });
  let n = 0;
  try {
    for await (const line of lines) {
      n++;
      if (line.trim() === '') continue;
      let value: unknown;
      try {
        value = JSON.parse(line);
      } catch {
        throw new AppError('VALIDATION_FAILED', `line ${n}: not valid JSON`);
      }
      const parsed = stateRecordSchema.safeParse(value);
      if (!parsed.success) {
        const issue = parsed.error.issues[0];
        const where = issue?.path.length ? ` at ${issue.path.join('.')}` : '';
        throw new AppError(
          'VALIDATION_FAILED',
          `line ${n}: not a state record${where}: ${issue?.message ?? ''}`,
        );
      }
      yield parsed.data as StateRecord;
    }
  } finally {
    lines.close();
  }
}

/** `records` as an async iterable, whichever kind it is. */
export async function* toAsync<T>(records: AsyncIterable<T> | Iterable<T>): AsyncGenerator<T> {
  for await (const r of records) yield r;
}

export function emptyCounts(): ImportCounts {
  return { settings: 0, accounts: 0, workerTokens: 0, blobs: 0, users: 0, jobs: 0 };
}

/**
 * What an import has seen: refuses what would corrupt a store (a newer format, a second header,
 * two jobs with one id or seq, ...), counts records, and works out the counters to store — the
 * exported ones, raised where a job or user outran them (an export of a busy Redis store can see a
 * job enqueued after it read the counters), so ids and order keep increasing after the import.
 */
export class ImportTracker {
  readonly counts = emptyCounts();
  private seen = 0;
  private readonly ids = new Set<string>();
  private readonly seqs = new Set<number>();
  private readonly singles = new Set<string>();
  private readonly names = {
    account: new Set<string>(),
    worker_token: new Set<string>(),
    user: new Set<string>(),
  };
  private readonly blobKeys = new Set<string>();
  private counters = { seq: 0, front: 0, serve: 0 };

  observe(r: StateRecord): void {
    this.seen++;
    switch (r.type) {
      case 'header':
        if (this.seen !== 1) this.reject('the header must be the first record');
        if (r.format !== STATE_FORMAT) this.reject(`unknown format ${String(r.format)}`);
        if (r.version > STATE_VERSION) {
          this.reject(
            `format version ${r.version} is newer than this program reads (${STATE_VERSION}); upgrade comfy-multi`,
          );
        }
        return;
      case 'counters':
      case 'settings':
        if (this.singles.has(r.type)) this.reject(`more than one ${r.type} record`);
        this.singles.add(r.type);
        if (r.type === 'counters') {
          this.raise('seq', r.seq);
          this.raise('front', r.front);
          this.raise('serve', r.serve);
        } else {
          this.counts.settings++;
        }
        return;
      case 'account':
        this.unique('account', r.account.name);
        this.counts.accounts++;
        return;
      case 'worker_token':
        this.unique('worker_token', r.token.name);
        this.counts.workerTokens++;
        return;
      case 'user':
        this.unique('user', r.user);
        this.raise('serve', r.lastServed);
        this.counts.users++;
        return;
      case 'blob': {
        const k = JSON.stringify([r.ns, r.key]);
        if (this.blobKeys.has(k)) this.reject(`blob ${r.ns}/${r.key} appears twice`);
        this.blobKeys.add(k);
        this.counts.blobs++;
        return;
      }
      case 'job':
        if (this.ids.has(r.job.id)) this.reject(`job ${r.job.id} appears twice`);
        if (this.seqs.has(r.job.seq)) this.reject(`two jobs have seq ${r.job.seq}`);
        this.ids.add(r.job.id);
        this.seqs.add(r.job.seq);
        this.raise('seq', r.job.seq);
        this.raise('front', r.job.front);
        this.counts.jobs++;
        return;
      default:
        this.reject(`unknown record type ${String((r as { type?: unknown }).type)}`);
    }
  }

  /** The counters to store once every record was seen. */
  finalCounters(): { seq: number; front: number; serve: number } {
    return { ...this.counters };
  }

  private raise(k: 'seq' | 'front' | 'serve', v: number): void {
    if (v > this.counters[k]) this.counters[k] = v;
  }

  private unique(kind: keyof ImportTracker['names'], name: string): void {
    if (this.names[kind].has(name)) this.reject(`${kind} ${name} appears twice`);
    this.names[kind].add(name);
  }

  private reject(why: string): never {
    throw new AppError('VALIDATION_FAILED', `Cannot import this state: ${why}.`);
  }
}

/** The error for importing into a store that already holds something. */
export function notEmptyError(backend: string): AppError {
  return new AppError(
    'CONFLICT',
    `The ${backend} store is not empty; import into an empty store, or replace what it holds.`,
  );
}
