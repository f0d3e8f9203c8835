/**
 * Model warm-up by reading ahead. A GPU that just started (an ephemeral worker), or one running a
 * long video job, leaves its disk idle while the files the next jobs need sit on a slow network
 * volume (tens of GB each). The agent reads those files once, sequentially, into the operating
 * system's page cache, so that when ComfyUI's loader opens them they come from memory.
 *
 * Which files: the control plane names the model files of the jobs waiting at the head of the
 * queue in `welcome.warmup` (`<folder>/<name>`, the form `Job.models` uses); the agent adds the
 * models of jobs it holds but ComfyUI has not started. Where they are: ComfyUI's own
 * `GET /internal/folder_paths` (folder → directories, in ComfyUI's search order), the first
 * directory holding the file wins — so the agent must run beside ComfyUI (the GPU image does); when
 * it cannot see the files (another machine, a stand-in) nothing is read.
 *
 * Bounded: one file at a time, never more in all than `budgetFraction` of the machine's memory
 * (the page cache would only evict what it read first), each file once per `rereadAfterMs`.
 * Reading never delays a job; failures are logged at debug level and skipped.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { totalmem } from 'node:os';
import { join, resolve, sep } from 'node:path';
import type { Logger } from 'pino';

export interface ReadAheadStatus {
  /** Files read into the page cache so far. */
  files: number;
  bytes: number;
  /** Waiting to be read. */
  queued: number;
  /** The file being read now (`<folder>/<name>`), if any. */
  reading: string | null;
  /** Asked for but not found beside this agent. */
  missing: number;
}

export interface ModelReadAheadOptions {
  comfyuiUrl: string;
  logger: Logger;
  /** Share of total memory all reads together may fill. Default 0.6. */
  budgetFraction?: number;
  /** A file read before is read again only after this long. Default 30 min. */
  rereadAfterMs?: number;
  /** Bytes of memory (tests). Default os.totalmem(). */
  memoryBytes?: number;
}

export class ModelReadAhead {
  private readonly queue: string[] = [];
  private readonly readAt = new Map<string, number>();
  private folders: Record<string, string[]> | null = null;
  private running: Promise<void> | null = null;
  private readonly abort = new AbortController();
  private st: ReadAheadStatus = { files: 0, bytes: 0, queued: 0, reading: null, missing: 0 };
  private readonly budget: number;

  constructor(private readonly opts: ModelReadAheadOptions) {
    this.budget = (opts.memoryBytes ?? totalmem()) * (opts.budgetFraction ?? 0.6);
  }

  status(): ReadAheadStatus {
    return { ...this.st, queued: this.queue.length };
  }

  /** Reads these model files ahead (in this order, after those already asked for). */
  want(models: readonly string[]): void {
    if (this.abort.signal.aborted) return;
    const rereadAfter = this.opts.rereadAfterMs ?? 30 * 60_000;
    for (const m of models) {
      const at = this.readAt.get(m);
      if (this.queue.includes(m) || this.st.reading === m) continue;
      if (at !== undefined && Date.now() - at < rereadAfter) continue;
      this.queue.push(m);
    }
    this.running ??= this.drain().finally(() => (this.running = null));
  }

  /** Stops reading (the agent is stopping). */
  async stop(): Promise<void> {
    this.abort.abort();
    this.queue.length = 0;
    await this.running;
  }

  /** Resolves once nothing is queued or being read (tests). */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  private async drain(): Promise<void> {
    while (this.queue.length > 0 && !this.abort.signal.aborted) {
      const model = this.queue.shift()!;
      if (this.st.bytes >= this.budget) {
        this.opts.logger.debug({ model }, 'model read-ahead: memory budget used up');
        this.queue.length = 0;
        return;
      }
      this.st.reading = model;
      try {
        const path = await this.locate(model);
        if (!path) {
          this.st.missing++;
          continue;
        }
        const size = (await stat(path)).size;
        if (this.st.bytes + size > this.budget) continue;
        const started = Date.now();
        await this.readThrough(path);
        this.readAt.set(model, Date.now());
        this.st.files++;
        this.st.bytes += size;
        this.opts.logger.info(
          { model, bytes: size, ms: Date.now() - started },
          'model read ahead into the page cache',
        );
      } catch (err) {
        if (!this.abort.signal.aborted) this.opts.logger.debug({ err, model }, 'model read-ahead failed');
      } finally {
        this.st.reading = null;
      }
    }
  }

  /** `<folder>/<name>` → the file ComfyUI would load, or null. Never outside its folders. */
  private async locate(model: string): Promise<string | null> {
    const slash = model.indexOf('/');
    if (slash <= 0) return null;
    const folder = model.slice(0, slash);
    const name = model.slice(slash + 1);
    const dirs = (await this.folderPaths())[folder] ?? [];
    for (const dir of dirs) {
      const root = resolve(dir);
      const path = resolve(join(root, name));
      if (!path.startsWith(root + sep)) continue;
      try {
        if ((await stat(path)).isFile()) return path;
      } catch {
        // not in this directory
      }
    }
    return null;
  }

  private async folderPaths(): Promise<Record<string, string[]>> {
    if (this.folders) return this.folders;
    const res = await fetch(`${this.opts.comfyuiUrl.replace(/\/+$/, '')}/internal/folder_paths`, {
      signal: AbortSignal.any([this.abort.signal, AbortSignal.timeout(10_000)]),
    });
    if (!res.ok) throw new Error(`ComfyUI answered ${res.status} to /internal/folder_paths`);
    const body = (await res.json()) as unknown;
    const out: Record<string, string[]> = {};
    if (body && typeof body === 'object')
      for (const [k, v] of Object.entries(body as Record<string, unknown>))
        if (Array.isArray(v)) out[k] = v.filter((d): d is string => typeof d === 'string');
    this.folders = out;
    return out;
  }

  private readThrough(path: string): Promise<void> {
    return new Promise((resolveRead, reject) => {
      const s = createReadStream(path, { highWaterMark: 4 << 20, signal: this.abort.signal });
      s.on('data', () => {});
      s.on('end', () => resolveRead());
      s.on('error', reject);
    });
  }
}
