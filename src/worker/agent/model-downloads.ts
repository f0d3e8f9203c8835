/**
 * The agent's model downloads: takes `model_download` / `model_download_cancel` from the control
 * plane, runs the downloads one at a time (a GPU box's disk and network are shared with the jobs),
 * reports `model_download_progress` on every change of state and at most every `progressMs` while
 * bytes flow, and after a file landed asks the agent to re-read ComfyUI's model lists (so the
 * control plane's submit check knows it) before reporting `done`.
 */
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import type { Logger } from 'pino';
import {
  TERMINAL_DOWNLOAD_STATES,
  type AgentMessage,
  type ModelDownloadStatus,
  type ServerMessage,
} from '../protocol.js';
import { displayUrl, downloadModel, KEEP_PARTIAL, ModelDownloadError } from './model-download.js';

type StartMsg = Extract<ServerMessage, { type: 'model_download' }>;

/** Partial files live here, inside the models folder (same file system) but in no folder ComfyUI reads. */
export const PARTIAL_DIR = '.comfy-multi-downloads';
/** Finished downloads remembered for the next `hello`. */
const KEEP_FINISHED = 20;

export interface AgentModelDownloadsOptions {
  /** ComfyUI's models folder (`--models-dir`); null: this agent takes no downloads. */
  modelsDir: string | null;
  send: (msg: AgentMessage) => boolean;
  log: Logger;
  /** After a file landed: re-read ComfyUI's environment and send it to the control plane. */
  onLanded: () => Promise<void>;
  /** Between progress reports while bytes flow. Default 1000 ms. */
  progressMs?: number;
  freeBytes?: ((dir: string) => Promise<number>) | undefined;
  retryDelayMs?: number | undefined;
}

interface Entry {
  msg: StartMsg;
  status: ModelDownloadStatus;
  abort: AbortController;
  lastSent: number;
}

export class AgentModelDownloads {
  private readonly entries = new Map<string, Entry>();
  private readonly queue: Entry[] = [];
  private running: Entry | null = null;

  constructor(private readonly opts: AgentModelDownloadsOptions) {}

  get enabled(): boolean {
    return this.opts.modelsDir !== null;
  }

  /** What `hello` reports: every download still known, so a reconnect refreshes the dashboard. */
  statuses(): ModelDownloadStatus[] {
    return [...this.entries.values()].map((e) => e.status).slice(-64);
  }

  /** Something is being downloaded or waits to be. */
  get busy(): boolean {
    return this.running !== null || this.queue.length > 0;
  }

  start(msg: StartMsg): void {
    const known = this.entries.get(msg.downloadId);
    if (known) {
      // A repeat (the control plane re-sent it after a reconnect): report where it stands.
      this.report(known, true);
      return;
    }
    const entry: Entry = {
      msg,
      status: { downloadId: msg.downloadId, state: 'queued', received: 0, total: null },
      abort: new AbortController(),
      lastSent: 0,
    };
    this.entries.set(msg.downloadId, entry);
    this.trim();
    if (!this.opts.modelsDir) {
      return this.finish(entry, {
        state: 'failed',
        error: {
          code: 'no_models_dir',
          message: 'This worker was started without --models-dir, so it cannot download models.',
        },
      });
    }
    const same = [...this.entries.values()].find(
      (e) =>
        e !== entry &&
        !TERMINAL_DOWNLOAD_STATES.includes(e.status.state) &&
        e.msg.folder === msg.folder &&
        e.msg.filename === msg.filename,
    );
    if (same) {
      return this.finish(entry, {
        state: 'failed',
        error: {
          code: 'busy',
          message: `${msg.folder}/${msg.filename} is already being downloaded on this worker.`,
        },
      });
    }
    this.opts.log.info(
      { downloadId: msg.downloadId, url: displayUrl(msg.url), folder: msg.folder, filename: msg.filename },
      'model download requested',
    );
    this.queue.push(entry);
    this.report(entry, true);
    this.pump();
  }

  cancel(downloadId: string): void {
    const entry = this.entries.get(downloadId);
    if (!entry) return;
    if (TERMINAL_DOWNLOAD_STATES.includes(entry.status.state)) return void this.report(entry, true);
    const i = this.queue.indexOf(entry);
    if (i >= 0) {
      this.queue.splice(i, 1);
      return this.finish(entry, { state: 'cancelled' });
    }
    entry.abort.abort();
  }

  /**
   * The agent is stopping: drops the queue and stops the running download, keeping its partial
   * file (the control plane sends the download again when this worker is back; it resumes).
   */
  stop(): void {
    this.queue.length = 0;
    this.running?.abort.abort(KEEP_PARTIAL);
  }

  private pump(): void {
    if (this.running) return;
    const next = this.queue.shift();
    if (!next) return;
    this.running = next;
    void this.run(next).finally(() => {
      this.running = null;
      this.pump();
    });
  }

  private async run(entry: Entry): Promise<void> {
    const { msg } = entry;
    const modelsDir = this.opts.modelsDir!;
    // One partial file per target, so a later download of the same file resumes it.
    const key = createHash('sha256').update(`${msg.folder}/${msg.filename}`).digest('hex').slice(0, 16);
    try {
      const result = await downloadModel({
        url: msg.url,
        token: msg.token,
        sha256: msg.sha256,
        dest: join(modelsDir, msg.folder, msg.filename),
        part: join(modelsDir, PARTIAL_DIR, `${key}.part`),
        signal: entry.abort.signal,
        freeBytes: this.opts.freeBytes,
        retryDelayMs: this.opts.retryDelayMs,
        onProgress: (p) => {
          const changed = entry.status.state !== p.phase;
          entry.status = { ...entry.status, state: p.phase, received: p.received, total: p.total };
          this.report(entry, changed);
        },
      });
      this.opts.log.info(
        { downloadId: msg.downloadId, folder: msg.folder, filename: msg.filename, size: result.size },
        result.existing ? 'model file already present' : 'model file downloaded and verified',
      );
      // The control plane hears `done` only once ComfyUI's model list (env) has been re-sent.
      await this.opts
        .onLanded()
        .catch((err: unknown) =>
          this.opts.log.warn({ err: (err as Error).message }, 'could not re-read the ComfyUI environment'),
        );
      this.finish(entry, {
        state: 'done',
        received: result.size,
        total: result.size,
        sha256: result.sha256,
        existing: result.existing,
      });
    } catch (err) {
      const e =
        err instanceof ModelDownloadError ? err : new ModelDownloadError('failed', (err as Error).message);
      if (e.code === 'cancelled') return this.finish(entry, { state: 'cancelled' });
      // Stopping: say nothing, so the control plane sends it again when this worker is back.
      if (e.code === 'stopped') return;
      this.opts.log.warn(
        { downloadId: msg.downloadId, code: e.code, reason: e.message },
        'model download failed',
      );
      this.finish(entry, { state: 'failed', error: { code: e.code, message: e.message } });
    }
  }

  private finish(entry: Entry, patch: Partial<ModelDownloadStatus>): void {
    entry.status = { ...entry.status, ...patch };
    this.report(entry, true);
  }

  /** Sends the status now when `force` (a change of state), else at most every `progressMs`. */
  private report(entry: Entry, force: boolean): void {
    const now = performance.now();
    if (!force && now - entry.lastSent < (this.opts.progressMs ?? 1000)) return;
    entry.lastSent = now;
    this.opts.send({ type: 'model_download_progress', ...entry.status });
  }

  /** Forgets the oldest finished downloads beyond {@link KEEP_FINISHED}. */
  private trim(): void {
    const finished = [...this.entries.values()].filter((e) =>
      TERMINAL_DOWNLOAD_STATES.includes(e.status.state),
    );
    for (const e of finished.slice(0, Math.max(0, finished.length - KEEP_FINISHED)))
      this.entries.delete(e.msg.downloadId);
  }
}
