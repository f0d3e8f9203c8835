/**
 * Which GPU has which model files, for dispatch: a job needing a file that some connected worker
 * has and another lacks goes to one that has it (issue: "no participant ever queues a job that
 * fails for a missing model"). Worker environments are content-addressed (env hash), so the file
 * set of each is read from the store once and cached.
 *
 * A file no known worker lists is not steered: a participant's own LoRA (fetched on demand), a
 * model of a custom loader the requirement sets do not know, or a file on its way (a model
 * download) — the submit check decides about those, not the dispatcher.
 */
import type { BlobStore } from '../store/types.js';
import { loadEnv } from './env-snapshots.js';

interface Holder {
  envHash: string | null;
}

const MAX_CACHED = 32;

export class ModelPlacement {
  private readonly files = new Map<string, Set<string>>();

  constructor(private readonly store: BlobStore) {}

  /** True when some worker's environment is not read yet (then `load` before asking). */
  needsLoad(workers: readonly Holder[]): boolean {
    return workers.some((w) => w.envHash !== null && !this.files.has(w.envHash));
  }

  async load(workers: readonly Holder[]): Promise<void> {
    for (const w of workers) {
      if (w.envHash === null || this.files.has(w.envHash)) continue;
      const env = await loadEnv(this.store, w.envHash).catch(() => null);
      if (!env) continue;
      const set = new Set<string>();
      for (const [folder, names] of Object.entries(env.models))
        for (const n of names) set.add(`${folder}/${n}`);
      if (this.files.size >= MAX_CACHED) this.files.delete(this.files.keys().next().value!);
      this.files.set(w.envHash, set);
    }
  }

  /**
   * For `worker` among `workers` (every connected one): runnable when each file is on it or on
   * no other known worker. Undefined (no steering) when there is nothing to tell apart.
   */
  runnableFor<W extends Holder>(
    worker: W,
    workers: readonly W[],
  ): ((models: readonly string[]) => boolean) | undefined {
    const mine = worker.envHash !== null ? this.files.get(worker.envHash) : undefined;
    if (!mine) return undefined;
    const others: Set<string>[] = [];
    for (const w of workers) {
      if (w === worker || w.envHash === null || w.envHash === worker.envHash) continue;
      const set = this.files.get(w.envHash);
      if (set) others.push(set);
    }
    if (others.length === 0) return undefined;
    return (models) => models.every((m) => mine.has(m) || !others.some((o) => o.has(m)));
  }
}
