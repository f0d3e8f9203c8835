/**
 * GPU cost per worker, per UTC day and per participant, for the dashboard, /metrics and the CSV
 * export after the workshop (`GET /api/v1/autoscale/usage.csv`).
 *
 * Two kinds of rows, because clouds bill instances and participants use jobs:
 * - `worker`: an instance's billed time (start request to its end, as clouds bill), split at
 *   midnight UTC, times the price per hour of its instance type.
 * - `participant`: the GPU time of a participant's finished jobs (claimed to finished) on one
 *   worker, times the price per hour of the instance type that ran them. Idle instance time is
 *   in the worker rows only, so participant costs add up to less than the bill.
 *
 * Aggregated (not one row per job) so it stays small over a week-long workshop, and kept in the
 * store so a restart of the control plane does not lose the figures.
 */
import type { BlobStore } from '../store/types.js';

const DAY_MS = 86_400_000;
const NS = 'autoscale';
const KEY = 'cost-ledger';
/** Bound on aggregated rows (days × workers × participants); the oldest go first. */
const MAX_ROWS = 50_000;

export interface CostRow {
  kind: 'worker' | 'participant';
  /** UTC day, YYYY-MM-DD. */
  day: string;
  worker: string;
  /** Empty for worker rows. */
  participant: string;
  instanceType: string;
  gpuSeconds: number;
  pricePerHour: number;
  cost: number;
}

interface Entry {
  kind: 'worker' | 'participant';
  day: string;
  worker: string;
  participant: string;
  instanceType: string;
  ms: number;
}

/** Prices per hour by instance type; unknown types cost 0 (shown as such, never guessed). */
export type PriceOf = (instanceType: string) => number;

/** Calls `add(day, ms)` for each UTC day the span [from, to) touches. */
export function splitByDay(from: number, to: number, add: (day: string, ms: number) => void): void {
  let t = from;
  while (t < to) {
    const end = Math.min(to, t - (t % DAY_MS) + DAY_MS);
    add(new Date(t).toISOString().slice(0, 10), end - t);
    t = end;
  }
}

export class CostLedger {
  private readonly entries = new Map<string, Entry>();
  private dirty = false;

  constructor(
    private readonly priceOf: PriceOf,
    private readonly store: Pick<BlobStore, 'getBlob' | 'putBlob'> | null = null,
  ) {}

  /** An instance's billed span (it ended). */
  addWorker(worker: string, instanceType: string, from: number, to: number): void {
    splitByDay(from, to, (day, ms) =>
      this.add({ kind: 'worker', day, worker, participant: '', instanceType, ms }),
    );
  }

  /** A participant's finished job on `worker`. */
  addJob(participant: string, worker: string, instanceType: string, from: number, to: number): void {
    splitByDay(from, to, (day, ms) =>
      this.add({ kind: 'participant', day, worker, participant, instanceType, ms }),
    );
  }

  /**
   * All rows: the ended and the `running` instances (billed up to `now`), then the participants;
   * sorted by kind, day, worker, participant.
   */
  rows(now: number, running: Iterable<{ name: string; instanceType: string; from: number }> = []): CostRow[] {
    const merged = new Map<string, Entry>();
    for (const [k, e] of this.entries) merged.set(k, { ...e });
    for (const r of running)
      splitByDay(r.from, now, (day, ms) =>
        addTo(merged, {
          kind: 'worker',
          day,
          worker: r.name,
          participant: '',
          instanceType: r.instanceType,
          ms,
        }),
      );
    const rows = [...merged.values()].map((e) => {
      const price = this.priceOf(e.instanceType);
      return {
        kind: e.kind,
        day: e.day,
        worker: e.worker,
        participant: e.participant,
        instanceType: e.instanceType,
        gpuSeconds: Math.round(e.ms / 1000),
        pricePerHour: price,
        cost: Math.round((e.ms / 3_600_000) * price * 100) / 100,
      };
    });
    const order = (r: CostRow) => `${r.kind === 'worker' ? 0 : 1}\t${r.day}\t${r.worker}\t${r.participant}`;
    return rows.sort((a, b) => (order(a) < order(b) ? -1 : order(a) > order(b) ? 1 : 0));
  }

  /** GPU seconds and cost of each participant's jobs, all days (for /metrics and the dashboard). */
  participants(): { participant: string; gpuSeconds: number; cost: number }[] {
    const by = new Map<string, { ms: number; cost: number }>();
    for (const e of this.entries.values()) {
      if (e.kind !== 'participant') continue;
      const p = by.get(e.participant) ?? { ms: 0, cost: 0 };
      p.ms += e.ms;
      p.cost += (e.ms / 3_600_000) * this.priceOf(e.instanceType);
      by.set(e.participant, p);
    }
    return [...by]
      .map(([participant, p]) => ({
        participant,
        gpuSeconds: Math.round(p.ms / 1000),
        cost: Math.round(p.cost * 100) / 100,
      }))
      .sort((a, b) => b.cost - a.cost || b.gpuSeconds - a.gpuSeconds);
  }

  async load(): Promise<void> {
    if (!this.store) return;
    const raw = await this.store.getBlob(NS, KEY).catch(() => null);
    if (!raw) return;
    try {
      const v: unknown = JSON.parse(raw);
      if (!Array.isArray(v)) return;
      for (const e of v as Entry[]) {
        if (
          (e.kind === 'worker' || e.kind === 'participant') &&
          typeof e.day === 'string' &&
          typeof e.worker === 'string' &&
          typeof e.participant === 'string' &&
          typeof e.instanceType === 'string' &&
          typeof e.ms === 'number' &&
          e.ms >= 0
        )
          this.add(e);
      }
      this.dirty = false;
    } catch {
      // A damaged record loses the history only; new figures are counted again.
    }
  }

  /** Replaces what is held with the stored ledger (another process leads the autoscaler). */
  async reload(): Promise<void> {
    if (!this.store) return;
    this.entries.clear();
    await this.load();
  }

  /** Writes the ledger when it changed since the last save. */
  async save(): Promise<void> {
    if (!this.store || !this.dirty) return;
    this.dirty = false;
    await this.store.putBlob(NS, KEY, JSON.stringify([...this.entries.values()])).catch(() => {
      this.dirty = true;
    });
  }

  private add(e: Entry): void {
    if (e.ms <= 0) return;
    addTo(this.entries, e);
    this.dirty = true;
    if (this.entries.size > MAX_ROWS) {
      const oldest = this.entries.keys().next().value;
      if (oldest !== undefined) this.entries.delete(oldest);
    }
  }
}

function addTo(map: Map<string, Entry>, e: Entry): void {
  const k = `${e.kind}\t${e.day}\t${e.worker}\t${e.participant}\t${e.instanceType}`;
  const have = map.get(k);
  if (have) have.ms += e.ms;
  else map.set(k, { ...e });
}

const CSV_HEADER = [
  'kind',
  'day',
  'worker',
  'participant',
  'instance_type',
  'gpu_seconds',
  'price_per_hour',
  'cost',
];

/**
 * One CSV cell (RFC 4180): quoted when it holds a comma, quote or line break, quotes doubled.
 * A text cell starting with = + - @ (or a tab or carriage return) is prefixed with `'`, so a
 * spreadsheet shows a participant called `=HYPERLINK(...)` as text instead of running it.
 */
export function csvCell(v: string | number): string {
  let s = String(v);
  if (typeof v === 'string' && /^[=+\-@\t\r]/.test(s)) s = `'${s}`;
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** The rows as CSV with a header line, CRLF line ends (RFC 4180). */
export function costCsv(rows: CostRow[]): string {
  const lines = [CSV_HEADER.join(',')];
  for (const r of rows)
    lines.push(
      [r.kind, r.day, r.worker, r.participant, r.instanceType, r.gpuSeconds, r.pricePerHour, r.cost]
        .map(csvCell)
        .join(','),
    );
  return `${lines.join('\r\n')}\r\n`;
}
