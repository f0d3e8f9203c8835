/**
 * Model downloads across control-plane processes (STORE=redis, several `serve` behind a load
 * balancer).
 *
 * A worker's socket lives in one process, so only that process can send it `model_download` and
 * hear its progress. An instructor's request may land on any process:
 *
 * - **start**: the targets are looked up in the {@link WorkerDirectory} (every process's workers,
 *   with `modelDownloads` from their snapshots). Those connected here are started at once; for
 *   each other process holding some, a request goes to it on {@link DOWNLOADS_TOPIC} and the
 *   answer (its new records) joins the HTTP answer. No answer within `timeoutMs` (killed, cut
 *   off): `WORKER_UNREACHABLE`, as for a drain (src/cluster/worker-commands.ts).
 * - **cancel**: run by the process holding the download's worker; here when the worker is
 *   connected nowhere (it is told when it comes back, wherever that is).
 * - **records**: every process keeps a copy of every download. A change made here (a start, a
 *   worker's progress, a cancel) is published at once; copies from the others are merged, the
 *   newest `rev` winning. So `GET /api/v1/models/downloads` and the dashboard show the same list
 *   on every process, and a worker that reconnects to another process after its process died is
 *   caught up there (its downloads resumed or cancelled) as it would be by the same process.
 *   A process that starts, or whose Redis connection came back, asks the others for their copies.
 * - **the workshop's model list** lives in the store; a change is announced so that every
 *   dashboard shows it at once.
 *
 * Not used with one process (the service then has no router and publishes to no one).
 */
import type { Logger } from 'pino';
import type { ModelDownloadView } from '../admin/view-types.js';
import { AppError } from '../errors.js';
import { toAppError } from '../http/error-handler.js';
import type {
  DownloadRouter,
  ModelDownloadService,
  SharedDownload,
  StartDownloadInput,
} from '../dispatch/model-downloads.js';
import type { WorkerEntry } from '../dispatch/worker-registry.js';
import type { ClusterBus, Unsubscribe } from './cluster-bus.js';
import type { WorkerDirectory } from './worker-directory.js';
import { PendingRequests } from './pending-requests.js';

export const DOWNLOADS_TOPIC = 'model-downloads';

type Op =
  | { op: 'start'; input: StartDownloadInput & { workers: string[] }; by: string }
  | { op: 'cancel'; downloadId: string };

type Message =
  | { t: 'recs'; recs: SharedDownload[] }
  // The workshop's model list changed (it is in the store; the dashboards read it again).
  | { t: 'workshop' }
  | { t: 'ask' }
  | { t: 'req'; id: string; to: string; op: Op }
  // Answers go to every process; only the asker knows the (random) correlation id.
  | { t: 'res'; id: string; ok: true; downloads: ModelDownloadView[] }
  | { t: 'res'; id: string; ok: false; code: string; message: string };

export interface ModelDownloadRelayDeps {
  cluster: ClusterBus;
  directory: WorkerDirectory;
  models: ModelDownloadService;
  logger: Logger;
}

export class ModelDownloadRelay implements DownloadRouter {
  private readonly pending = new PendingRequests<ModelDownloadView[]>();
  private readonly stops: Unsubscribe[] = [];

  constructor(
    private readonly deps: ModelDownloadRelayDeps,
    private readonly opts: { timeoutMs?: number } = {},
  ) {}

  /** Publishes this process's changes, merges the others', routes requests (no-op unshared). */
  start(): void {
    const { cluster, models } = this.deps;
    if (this.stops.length > 0 || !cluster.shared) return;
    const onRecords = (recs: SharedDownload[]) => this.publish({ t: 'recs', recs });
    const onWorkshop = (origin: 'local' | 'remote') => {
      if (origin === 'local') this.publish({ t: 'workshop' });
    };
    models.on('records', onRecords);
    models.on('workshop', onWorkshop);
    models.router = this;
    this.stops.push(
      () => models.off('records', onRecords),
      () => models.off('workshop', onWorkshop),
      () => {
        if (models.router === this) models.router = null;
      },
      cluster.subscribe(DOWNLOADS_TOPIC, (m) => this.onMessage(m as Message)),
      cluster.onResync(() => {
        this.publish({ t: 'ask' });
        models.emit('workshop', 'remote'); // it may have changed meanwhile
      }),
    );
    this.publish({ t: 'ask' });
  }

  stop(): void {
    for (const s of this.stops.splice(0)) s();
    this.pending.failAll();
  }

  async startDownloads(input: StartDownloadInput, by: string): Promise<ModelDownloadView[]> {
    const { directory, models, cluster } = this.deps;
    // Every target checked first, so that a bad one starts nothing anywhere.
    const targets = models.targets(input.workers, directory);
    const byProcess = new Map<string, WorkerEntry[]>();
    for (const w of targets) {
      const p = w.process ?? cluster.processId;
      byProcess.set(p, [...(byProcess.get(p) ?? []), w]);
    }
    const here = byProcess.get(cluster.processId) ?? [];
    byProcess.delete(cluster.processId);
    const out = here.length > 0 ? models.startOn(here, input, by) : [];
    const elsewhere = await Promise.allSettled(
      [...byProcess].map(([to, ws]) =>
        this.request(to, { op: 'start', input: { ...input, workers: ws.map((w) => w.id) }, by }),
      ),
    );
    const failed = elsewhere.find((r) => r.status === 'rejected');
    for (const r of elsewhere) if (r.status === 'fulfilled') out.push(...r.value);
    if (failed) {
      if (out.length === 0) throw failed.reason;
      // Some started: say which, so a retry can target the rest.
      const e = toAppError(failed.reason);
      throw new AppError(
        e.code,
        `${e.message} Started meanwhile: ${out.map((d) => d.workerId).join(', ')}.`,
        {
          details: { started: out.map((d) => d.id) },
        },
      );
    }
    return out;
  }

  async cancelDownload(id: string): Promise<ModelDownloadView> {
    const { directory, models, cluster } = this.deps;
    const view = models.get(id);
    const holder = view ? directory.get(view.workerId) : undefined;
    const connectedElsewhere =
      holder?.process !== undefined && holder.process !== cluster.processId && holder.link?.open === true;
    if (!connectedElsewhere) return models.cancel(id);
    const [done] = await this.request(holder.process!, { op: 'cancel', downloadId: id });
    return done!;
  }

  private publish(m: Message): void {
    void this.deps.cluster.publish(DOWNLOADS_TOPIC, m).catch((err: unknown) => {
      this.deps.logger.warn({ err, t: m.t }, 'could not publish a model download message');
    });
  }

  private request(to: string, op: Op): Promise<ModelDownloadView[]> {
    const timeoutMs = this.opts.timeoutMs ?? 5000;
    return this.pending.ask(
      (id) => this.deps.cluster.publish(DOWNLOADS_TOPIC, { t: 'req', id, to, op } satisfies Message),
      timeoutMs,
      `The control-plane process holding the worker did not answer within ${timeoutMs / 1000} s; try again.`,
    );
  }

  /** Runs another process's request for workers connected here. */
  private answer(m: Extract<Message, { t: 'req' }>): void {
    const { models, logger } = this.deps;
    let answer: Message;
    try {
      const downloads =
        m.op.op === 'start' ? models.start(m.op.input, m.op.by) : [models.cancel(m.op.downloadId)];
      answer = { t: 'res', id: m.id, ok: true, downloads };
    } catch (err) {
      const e = toAppError(err);
      answer = { t: 'res', id: m.id, ok: false, code: e.code, message: e.message };
    }
    logger.info({ op: m.op.op }, 'ran a model download request for another process');
    // After the records it published (same connection, so the asker has them first).
    this.publish(answer);
  }

  private onMessage(m: Message): void {
    switch (m.t) {
      case 'recs':
        if (Array.isArray(m.recs)) this.deps.models.receive(m.recs);
        return;
      case 'workshop':
        this.deps.models.emit('workshop', 'remote');
        return;
      case 'ask': {
        const recs = this.deps.models.shared();
        if (recs.length > 0) this.publish({ t: 'recs', recs });
        return;
      }
      case 'req':
        if (m.to === this.deps.cluster.processId) this.answer(m);
        return;
      case 'res':
        this.pending.settle(m.ok ? { id: m.id, ok: true, value: m.downloads } : m);
    }
  }
}
