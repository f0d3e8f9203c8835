/**
 * GPU time as clouds bill it: from the start request to the instance's end. Keeps the spans of
 * ended instances (bounded) and adds the running ones when asked, for today's use (the daily
 * budget), the cost figures and GPU time per worker.
 */

const MAX_ENDED = 2000;
const DAY_MS = 86_400_000;

export class GpuUsage {
  private readonly ended: { name: string; from: number; to: number }[] = [];

  /** An instance ended: its span is kept. */
  end(name: string, from: number, to: number): void {
    this.ended.push({ name, from, to });
    if (this.ended.length > MAX_ENDED) this.ended.splice(0, this.ended.length - MAX_ENDED);
  }

  /** GPU ms since midnight UTC of `now`, ended spans and the running ones given. */
  todayMs(now: number, running: Iterable<{ from: number }>): number {
    const day = now - (now % DAY_MS);
    const overlap = (from: number, to: number) => Math.max(0, Math.min(to, now) - Math.max(from, day));
    let ms = 0;
    for (const f of this.ended) ms += overlap(f.from, f.to);
    for (const r of running) ms += overlap(r.from, now);
    return ms;
  }

  /** GPU seconds per worker name, ended and running. */
  byWorker(now: number, running: Iterable<{ name: string; from: number }>): Map<string, number> {
    const out = new Map<string, number>();
    const add = (name: string, ms: number) => out.set(name, (out.get(name) ?? 0) + ms / 1000);
    for (const f of this.ended) add(f.name, f.to - f.from);
    for (const r of running) add(r.name, now - r.from);
    return out;
  }
}
