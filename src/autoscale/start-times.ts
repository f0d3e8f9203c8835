/**
 * Measured start times (start request → worker registered) of one provider and instance type,
 * kept in the store so the estimate survives restarts. The estimate shown to waiting participants
 * ("GPU starting, about N s") is the median of the last {@link KEEP} — measured, never guessed:
 * before the first start there is no number.
 */
import type { BlobStore } from '../store/types.js';

const KEEP = 20;
const NS = 'autoscale';

export class StartTimes {
  private samples: number[] = [];

  constructor(
    private readonly store: Pick<BlobStore, 'getBlob' | 'putBlob'> | null,
    private readonly key: string,
  ) {}

  async load(): Promise<void> {
    if (!this.store) return;
    const raw = await this.store.getBlob(NS, `start-times/${this.key}`).catch(() => null);
    if (!raw) return;
    try {
      const v: unknown = JSON.parse(raw);
      if (Array.isArray(v))
        this.samples = v.filter((x): x is number => typeof x === 'number' && x >= 0).slice(-KEEP);
    } catch {
      // A damaged record only loses the history; the next start measures again.
    }
  }

  async add(ms: number): Promise<void> {
    this.samples.push(Math.max(0, ms));
    if (this.samples.length > KEEP) this.samples.splice(0, this.samples.length - KEEP);
    await this.store
      ?.putBlob(NS, `start-times/${this.key}`, JSON.stringify(this.samples))
      .catch(() => undefined);
  }

  get count(): number {
    return this.samples.length;
  }

  /** Median of the recent starts, or null before the first. */
  estimateMs(): number | null {
    if (this.samples.length === 0) return null;
    const s = [...this.samples].sort((a, b) => a - b);
    const mid = s.length >> 1;
    return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
  }
}

/** Started and not yet registered. */
export function isStarting(i: { phase: string }): boolean {
  return i.phase === 'requested' || i.phase === 'starting';
}

/** Seconds until a starting instance is probably ready (estimate minus time spent); null when unknown or not starting. */
export function etaSeconds(
  i: { phase: string; requestedAt: number },
  estimateMs: number | null,
  now: number,
): number | null {
  if (!isStarting(i) || estimateMs === null) return null;
  return Math.max(0, Math.round((estimateMs - (now - i.requestedAt)) / 1000));
}
