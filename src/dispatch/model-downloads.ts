/**
 * Model downloads onto workers, the control plane's side: an instructor asks for a file (URL,
 * models folder, name, optional sha256 and bearer token) on one or every worker; each worker gets
 * a `model_download` over its socket and reports `model_download_progress`. Records live in
 * memory (the dashboard's live view and `GET /api/v1/models/downloads`); the bearer token too,
 * only until the download ends, and it goes nowhere but to the worker: never logged, never listed.
 *
 * A worker that reconnects lists the downloads it still knows in `hello`; one it does not know
 * any more (the agent restarted) is sent again and resumes from its partial file.
 *
 * With several control-plane processes (src/cluster/model-download-relay.ts) every process keeps
 * a copy of every record: each local change bumps the record's `rev` and goes out as a `records`
 * event, and copies from the others come in through {@link ModelDownloadService.receive}. Only
 * the process holding a worker's socket sends to it and applies its reports; a request on another
 * process goes through the {@link DownloadRouter}. One process: no router, no copies, no cost.
 */
import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { ModelDownloadView } from '../admin/view-types.js';
import { AppError } from '../errors.js';
import {
  TERMINAL_DOWNLOAD_STATES,
  type AgentMessage,
  type ModelDownloadFolder,
  type ModelDownloadStatus,
} from '../worker/protocol.js';
import type { BlobStore } from '../store/types.js';
import { loadEnv } from './env-snapshots.js';
import type { WorkerEntry, WorkerReader, WorkerRegistry } from './worker-registry.js';
import {
  loadWorkshopModels,
  saveWorkshopModels,
  workshopView,
  type WorkshopModel,
  type WorkshopModelView,
} from './workshop-models.js';
import type { DownloadRouter, SharedDownload, StartDownloadInput } from './model-download-types.js';
import { shownUrl } from './model-download-types.js';

export { shownUrl, type DownloadRouter, type SharedDownload, type StartDownloadInput };

interface Rec {
  view: ModelDownloadView;
  /** The URL as given (may carry a signed query) and the token: sent to the worker only. */
  secret: { url: string; token: string | undefined } | null;
  speed: { at: number; received: number } | null;
  /** Bumped by every change, so that the other processes' copies keep the newest. */
  rev: number;
}

const ended = (v: ModelDownloadView): boolean => TERMINAL_DOWNLOAD_STATES.includes(v.state);

/** Records kept (finished ones beyond this are forgotten, oldest first). */
const KEEP = 200;

export interface ModelDownloadServiceOptions {
  /** Where the workshop's model list is kept (blob `models/workshop`) and env snapshots are read. */
  store: BlobStore;
  /** A worker finished fetching the workshop's models and may take jobs now (a dispatch pass). */
  onWorkerReady?: () => void;
  clock?: () => number;
}

/**
 * `change`: a download changed; `workshop`: the workshop's model list changed (here, or on another
 * process); `records`: the records this process changed (not those received from others), for the
 * other processes.
 */
export class ModelDownloadService extends EventEmitter<{
  change: [];
  workshop: [origin: 'local' | 'remote'];
  records: [SharedDownload[]];
}> {
  /** Routes requests across processes; null with one process (everything is local). */
  router: DownloadRouter | null = null;
  private readonly records = new Map<string, Rec>();
  /** Changed since the last `change` event (published with it). */
  private readonly dirty = new Set<Rec>();
  /** Workers whose agent said `modelDownloads: true` on its current connection. */
  private readonly capable = new Set<string>();
  /** Per worker: the workshop downloads it must finish before it takes jobs. */
  private readonly preparing = new Map<string, Set<string>>();
  private readonly clock: () => number;

  constructor(
    private readonly workers: WorkerRegistry,
    private readonly logger: Logger,
    private readonly opts: ModelDownloadServiceOptions,
  ) {
    super();
    this.setMaxListeners(0);
    this.clock = opts.clock ?? Date.now;
  }

  /** Connected workers that take downloads. */
  capableWorkers(): WorkerEntry[] {
    return this.workers.online().filter((w) => this.capable.has(w.id));
  }

  /** Newest first (by creation, so every process lists its copies in the same order). */
  list(): ModelDownloadView[] {
    return [...this.records.values()]
      .map((r) => ({ ...r.view }))
      .sort((a, b) => b.createdAt - a.createdAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  get(id: string): ModelDownloadView | null {
    const r = this.records.get(id);
    return r ? { ...r.view } : null;
  }

  /** Starts a download on its target workers, wherever they are connected (the API's entry). */
  request(input: StartDownloadInput, by: string): Promise<ModelDownloadView[]> {
    return this.router ? this.router.startDownloads(input, by) : Promise.resolve(this.start(input, by));
  }

  /** Cancels a download, through the process holding its worker (the API's entry). */
  requestCancel(id: string): Promise<ModelDownloadView> {
    return this.router ? this.router.cancelDownload(id) : Promise.resolve(this.cancel(id));
  }

  /** Starts a download on target workers connected to this process. */
  start(input: StartDownloadInput, by: string): ModelDownloadView[] {
    return this.startOn(this.targets(input.workers), input, by);
  }

  /**
   * The workers a download is for, as `reader` lists them (this process's registry, or every
   * process's directory); throws when one is unknown, offline or takes no downloads.
   */
  targets(workers: StartDownloadInput['workers'], reader: WorkerReader = this.workers): WorkerEntry[] {
    // This process's workers by their current hello; another's by its snapshot.
    const takes = (w: WorkerEntry) =>
      w.process === undefined ? this.capable.has(w.id) : w.modelDownloads === true;
    let targets: WorkerEntry[];
    if (workers === 'all') {
      targets = reader.online().filter(takes);
      if (targets.length === 0) {
        throw new AppError(
          'NO_MODEL_WORKER',
          'No connected worker takes model downloads: start the agents with --models-dir (COMFYUI_MODELS_DIR).',
        );
      }
    } else {
      const online = new Set(reader.online());
      targets = [...new Set(workers)].map((id) => {
        const w = reader.get(id);
        if (!w) throw new AppError('WORKER_NOT_FOUND', `No worker with id ${id}.`);
        if (!online.has(w) || !takes(w)) {
          throw new AppError(
            'NO_MODEL_WORKER',
            `Worker ${id} is offline or was started without --models-dir (COMFYUI_MODELS_DIR).`,
            { details: { workerId: id } },
          );
        }
        return w;
      });
    }
    return targets;
  }

  /** Creates and sends the records for these workers (connected to this process). */
  startOn(targets: WorkerEntry[], input: StartDownloadInput, by: string): ModelDownloadView[] {
    const out = targets.map((w) => this.create(w, input, by));
    this.trim();
    this.logger.info(
      {
        by,
        url: shownUrl(input.url),
        folder: input.folder,
        filename: input.filename,
        workers: targets.map((w) => w.id),
      },
      'model download started',
    );
    this.changed();
    return out;
  }

  /** A new record for one worker, sent to it at once. */
  private create(w: WorkerEntry, input: WorkshopModel, by: string): ModelDownloadView {
    const now = this.clock();
    const id = randomBytes(9).toString('base64url');
    const rec: Rec = {
      view: {
        id,
        workerId: w.id,
        workerName: w.name,
        url: shownUrl(input.url),
        folder: input.folder,
        filename: input.filename,
        expectedSha256: input.sha256 ?? null,
        withToken: input.token !== undefined,
        by,
        state: 'queued',
        received: 0,
        total: null,
        bytesPerSecond: null,
        sha256: null,
        existing: false,
        error: null,
        cancelRequested: false,
        createdAt: now,
        updatedAt: now,
        finishedAt: null,
      },
      secret: { url: input.url, token: input.token },
      speed: null,
      rev: 0,
    };
    this.records.set(id, rec);
    this.touch(rec);
    this.send(w, rec);
    return { ...rec.view };
  }

  /** The workshop's model list as shown (never the tokens). */
  async workshop(): Promise<WorkshopModelView[]> {
    return (await loadWorkshopModels(this.opts.store)).map((m) => workshopView(m, shownUrl));
  }

  /** Replaces the workshop's model list (workers registering from now on fetch what they lack). */
  async setWorkshop(models: WorkshopModel[]): Promise<WorkshopModelView[]> {
    await saveWorkshopModels(this.opts.store, models);
    this.emit('workshop', 'local');
    return models.map((m) => workshopView(m, shownUrl));
  }

  /** Adds (or replaces, by folder and file name) one entry; an existing entry's token is kept unless a new one is given. */
  async addToWorkshop(model: WorkshopModel): Promise<WorkshopModelView[]> {
    const list = await loadWorkshopModels(this.opts.store);
    const i = list.findIndex((m) => m.folder === model.folder && m.filename === model.filename);
    if (i >= 0)
      list[i] = { ...model, token: model.token ?? (list[i]!.url === model.url ? list[i]!.token : undefined) };
    else list.push(model);
    return this.setWorkshop(list);
  }

  /** Removes `folder/filename` from the workshop's model list (files already on workers stay). */
  async removeFromWorkshop(folder: string, filename: string): Promise<WorkshopModelView[]> {
    const list = await loadWorkshopModels(this.opts.store);
    const rest = list.filter((m) => !(m.folder === folder && m.filename === filename));
    if (rest.length === list.length)
      throw new AppError('NOT_FOUND', `${folder}/${filename} is not on the workshop's model list.`);
    return this.setWorkshop(rest);
  }

  cancel(id: string): ModelDownloadView {
    const rec = this.records.get(id);
    if (!rec) throw new AppError('MODEL_DOWNLOAD_NOT_FOUND', `No model download with id ${id}.`);
    if (TERMINAL_DOWNLOAD_STATES.includes(rec.view.state)) {
      throw new AppError('CONFLICT', `That download has already ended (${rec.view.state}).`, {
        details: { state: rec.view.state },
      });
    }
    rec.view.cancelRequested = true;
    rec.view.updatedAt = this.clock();
    this.touch(rec);
    const link = this.workers.get(rec.view.workerId)?.link;
    const sent = link?.open ? link.send({ type: 'model_download_cancel', downloadId: id }) : false;
    // An offline worker is told when it comes back (its hello lists the download, see hello()).
    if (!sent)
      this.apply(rec, {
        downloadId: id,
        state: 'cancelled',
        received: rec.view.received,
        total: rec.view.total,
      });
    this.changed();
    return { ...rec.view };
  }

  /**
   * A worker registered: note whether it takes downloads, catch up on its downloads, and have it
   * fetch the workshop's models it lacks. Until those have ended it takes no jobs
   * (`entry.preparing`); called before the dispatcher activates it.
   */
  async hello(entry: WorkerEntry, msg: Extract<AgentMessage, { type: 'hello' }>): Promise<void> {
    this.catchUp(entry, msg);
    await this.prepare(entry, msg.envHash);
  }

  /** The workshop's models this worker's ComfyUI does not list are downloaded before it takes jobs. */
  private async prepare(entry: WorkerEntry, envHash: string): Promise<void> {
    this.preparing.delete(entry.id);
    entry.preparing = false;
    if (!this.capable.has(entry.id)) return;
    let wanted: WorkshopModel[];
    try {
      wanted = await loadWorkshopModels(this.opts.store);
    } catch (err) {
      this.logger.warn({ err, workerId: entry.id }, 'could not read the workshop model list');
      return;
    }
    if (wanted.length === 0) return;
    // Unknown environment (not uploaded yet): ask for every file; present ones end at once (`existing`).
    const env = await loadEnv(this.opts.store, envHash).catch(() => null);
    const missing = wanted.filter((m) => !env?.models[m.folder]?.includes(m.filename));
    const pending = new Set<string>();
    for (const m of missing) {
      const running = [...this.records.values()].find(
        (r) =>
          r.view.workerId === entry.id &&
          !TERMINAL_DOWNLOAD_STATES.includes(r.view.state) &&
          r.view.folder === m.folder &&
          r.view.filename === m.filename,
      );
      pending.add(running ? running.view.id : this.create(entry, m, 'workshop').id);
    }
    if (pending.size === 0) return;
    this.preparing.set(entry.id, pending);
    entry.preparing = true;
    this.trim();
    this.logger.info(
      { workerId: entry.id, files: missing.map((m) => `${m.folder}/${m.filename}`) },
      'worker fetches the workshop models it lacks before taking jobs',
    );
    this.changed();
  }

  private catchUp(entry: WorkerEntry, msg: Extract<AgentMessage, { type: 'hello' }>): void {
    if (msg.modelDownloads === true) this.capable.add(entry.id);
    else this.capable.delete(entry.id);
    entry.modelDownloads = msg.modelDownloads === true;
    const known = new Map((msg.downloads ?? []).map((s) => [s.downloadId, s]));
    let changed = false;
    for (const rec of this.records.values()) {
      if (rec.view.workerId !== entry.id) continue;
      const s = known.get(rec.view.id);
      if (s) {
        this.apply(rec, s);
        changed = true;
        if (rec.view.cancelRequested && !TERMINAL_DOWNLOAD_STATES.includes(s.state))
          entry.link?.send({ type: 'model_download_cancel', downloadId: rec.view.id });
        continue;
      }
      if (TERMINAL_DOWNLOAD_STATES.includes(rec.view.state)) continue;
      changed = true;
      if (rec.view.cancelRequested) {
        this.apply(rec, { downloadId: rec.view.id, state: 'cancelled', received: 0, total: rec.view.total });
      } else if (this.capable.has(entry.id)) {
        // The agent restarted and forgot it: ask again (it resumes from the partial file).
        this.send(entry, rec);
      } else {
        this.apply(rec, {
          downloadId: rec.view.id,
          state: 'failed',
          received: rec.view.received,
          total: rec.view.total,
          error: { code: 'no_models_dir', message: 'The worker came back without --models-dir.' },
        });
      }
    }
    if (changed) this.changed();
  }

  disconnected(workerId: string): void {
    this.capable.delete(workerId);
    this.preparing.delete(workerId);
    const entry = this.workers.get(workerId);
    if (entry) entry.modelDownloads = false;
  }

  progress(entry: WorkerEntry, msg: Extract<AgentMessage, { type: 'model_download_progress' }>): void {
    const rec = this.records.get(msg.downloadId);
    if (!rec || rec.view.workerId !== entry.id) return;
    this.apply(rec, msg);
    this.changed();
  }

  private apply(rec: Rec, s: ModelDownloadStatus): void {
    const v = rec.view;
    if (TERMINAL_DOWNLOAD_STATES.includes(v.state)) return;
    const now = this.clock();
    if (s.state === 'downloading') {
      if (rec.speed && now > rec.speed.at && s.received >= rec.speed.received) {
        const bps = ((s.received - rec.speed.received) * 1000) / (now - rec.speed.at);
        v.bytesPerSecond = v.bytesPerSecond === null ? bps : Math.round(0.7 * v.bytesPerSecond + 0.3 * bps);
      }
      rec.speed = { at: now, received: s.received };
    } else {
      rec.speed = null;
      v.bytesPerSecond = null;
    }
    v.state = s.state;
    v.received = s.received;
    v.total = s.total;
    v.updatedAt = now;
    this.touch(rec);
    if (s.sha256 !== undefined) v.sha256 = s.sha256;
    if (s.existing !== undefined) v.existing = s.existing;
    if (s.error) v.error = { code: s.error.code, message: s.error.message };
    if (TERMINAL_DOWNLOAD_STATES.includes(s.state)) {
      v.finishedAt = now;
      rec.secret = null; // the token is forgotten as soon as it is not needed
      this.settled(v.workerId, v.id);
      this.logger.info(
        {
          downloadId: v.id,
          workerId: v.workerId,
          folder: v.folder,
          filename: v.filename,
          state: s.state,
          error: v.error?.code,
        },
        'model download ended',
      );
    }
  }

  /** A workshop download of that worker ended: once all have, it may take jobs. */
  private settled(workerId: string, id: string): void {
    const pending = this.preparing.get(workerId);
    if (!pending?.delete(id) || pending.size > 0) return;
    this.preparing.delete(workerId);
    const entry = this.workers.get(workerId);
    if (entry) entry.preparing = false;
    this.logger.info({ workerId }, 'worker has fetched the workshop models; taking jobs');
    this.opts.onWorkerReady?.();
  }

  private send(w: WorkerEntry, rec: Rec): void {
    if (!rec.secret) return;
    const v = rec.view;
    w.link?.send({
      type: 'model_download',
      downloadId: v.id,
      url: rec.secret.url,
      folder: v.folder as ModelDownloadFolder,
      filename: v.filename,
      ...(v.expectedSha256 ? { sha256: v.expectedSha256 } : {}),
      ...(rec.secret.token ? { token: rec.secret.token } : {}),
    });
  }

  /** Every record, for a process that asks after starting or reconnecting. */
  shared(): SharedDownload[] {
    return [...this.records.values()].map(toShared);
  }

  /**
   * Other processes' copies: kept when newer than ours (an ended record is never taken back).
   * Nothing is sent to a worker from here: the process holding it did that.
   */
  receive(copies: SharedDownload[]): void {
    let changed = false;
    for (const c of copies) {
      const cur = this.records.get(c.view.id);
      if (cur && (ended(cur.view) || (c.rev <= cur.rev && !ended(c.view)))) continue;
      this.records.set(c.view.id, {
        view: { ...c.view },
        secret: c.secret ? { url: c.secret.url, token: c.secret.token } : null,
        speed: cur?.speed ?? null,
        rev: c.rev,
      });
      changed = true;
    }
    if (!changed) return;
    this.trim();
    this.emit('change');
  }

  /** A record changed here: newer than every copy, and sent to the other processes. */
  private touch(rec: Rec): void {
    rec.rev += 1;
    this.dirty.add(rec);
  }

  private changed(): void {
    // Copied only for a listener (the relay, with several processes): one process pays nothing.
    if (this.dirty.size > 0 && this.listenerCount('records') > 0)
      this.emit('records', [...this.dirty].map(toShared));
    this.dirty.clear();
    this.emit('change');
  }

  private trim(): void {
    if (this.records.size <= KEEP) return;
    for (const [id, rec] of this.records) {
      if (this.records.size <= KEEP) break;
      if (TERMINAL_DOWNLOAD_STATES.includes(rec.view.state)) this.records.delete(id);
    }
  }
}

function toShared(r: Rec): SharedDownload {
  return { view: { ...r.view }, secret: r.secret ? { ...r.secret } : null, rev: r.rev };
}
