/**
 * The mirrored ComfyUI frontend on every control-plane process. A worker offers its frontend only
 * to the process it is connected to; with several processes behind a load balancer, a participant
 * routed to a process with no worker must still get ComfyUI. So each version a process assembles is
 * also kept where every process can read it:
 *
 * - contents in the file store (the S3 bucket with FILES=s3), content-addressed, outside users'
 *   spaces: `.frontend/blobs/<sha256>`, written once, shared by every version naming them;
 * - the version's manifest in the store (blob `frontend/versions/<id>`, the same JSON as on disk),
 *   written after its contents, so a manifest never names a content that is not there;
 * - the version to serve in blob `frontend/current`.
 *
 * Every process syncs on start, when told on the cluster topic `frontend`, and after a reconnect
 * (`onResync`): it copies the newest FRONTEND_KEEP_VERSIONS versions it lacks into its own cache
 * (each content checked against its sha256) and serves the shared current one once held. Compressed
 * copies are made per process, from its own disk. A process that held versions before it joined
 * shares them on its first sync. Only with a shared ClusterBus; the single process needs none of it.
 */
import { createReadStream } from 'node:fs';
import type { Logger } from 'pino';
import type { ClusterBus } from '../cluster/index.js';
import type { FileStore } from '../files/file-store.js';
import type { BlobStore } from '../store/types.js';
import { versionFileSchema, type FrontendCache, type FrontendVersion } from './frontend-cache.js';

const NS = 'frontend';
const TOPIC = 'frontend';
const blobKey = (sha256: string) => `.frontend/blobs/${sha256}`;

export interface FrontendShareDeps {
  cache: FrontendCache;
  files: FileStore;
  store: BlobStore;
  cluster: Pick<ClusterBus, 'publish' | 'subscribe' | 'onResync' | 'once'>;
  logger: Logger;
  keepVersions: number;
  /** Tests move time; default Date.now. */
  clock?: () => number;
}

/** Contents younger than this are never pruned: a version may be being shared right now. */
const PRUNE_MIN_AGE_MS = 3_600_000;

export class FrontendShare {
  private syncing: Promise<void> | null = null;
  private again = false;
  private readonly stops: (() => void)[] = [];
  private readonly publishing = new Set<Promise<unknown>>();
  private closed = false;

  constructor(private readonly deps: FrontendShareDeps) {}

  /** Listens for versions here and elsewhere, and starts the first sync (see {@link synced}). */
  start(): void {
    const { cache, cluster } = this.deps;
    const onVersion = (v: FrontendVersion) => this.track(this.share(v, true));
    const onCurrent = (id: string) => this.track(this.shareCurrent(id));
    cache.on('version', onVersion);
    cache.on('current', onCurrent);
    this.stops.push(
      () => cache.off('version', onVersion),
      () => cache.off('current', onCurrent),
      cluster.subscribe(TOPIC, () => void this.sync()),
      cluster.onResync(() => void this.sync()),
    );
    void this.sync();
  }

  /** Resolves when the sync under way (if any) is done. */
  async synced(): Promise<void> {
    while (this.syncing) await this.syncing;
    await Promise.allSettled([...this.publishing]);
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const s of this.stops.splice(0)) s();
    await this.synced().catch(() => undefined);
  }

  /** Copies what others shared and shares what only this process holds. Coalesced; never throws. */
  sync(): Promise<void> {
    if (this.closed) return Promise.resolve();
    if (this.syncing) {
      this.again = true;
      return this.syncing;
    }
    this.syncing = this.syncOnce()
      .catch((err: unknown) => this.deps.logger.warn({ err }, 'could not sync the shared ComfyUI frontend'))
      .finally(() => {
        this.syncing = null;
        if (this.again && !this.closed) {
          this.again = false;
          void this.sync();
        }
      });
    return this.syncing;
  }

  private async syncOnce(): Promise<void> {
    const { cache, store, files } = this.deps;
    const shared: FrontendVersion[] = [];
    for (const key of await store.listBlobs(NS, 'versions/')) {
      const raw = await store.getBlob(NS, key);
      if (!raw) continue;
      // A damaged manifest is skipped; the version is offered again by its worker.
      const parsed = versionFileSchema.safeParse(safeJson(raw));
      if (parsed.success) shared.push(parsed.data);
    }
    const sharedIds = new Set(shared.map((v) => v.id));
    // Held here but never shared (mirrored before this process joined, or its upload failed) —
    // unless older than every version kept there (then it was pruned on purpose).
    const full = shared.length >= Math.max(1, this.deps.keepVersions) * 2;
    const oldest = full ? Math.min(...shared.map((v) => v.offeredAt)) : -Infinity;
    for (const v of cache.list())
      if (!sharedIds.has(v.id) && v.offeredAt > oldest) await this.share(v, false);
    const current = await readCurrent(store);
    const wanted = shared
      .sort((a, b) => Number(b.id === current) - Number(a.id === current) || b.offeredAt - a.offeredAt)
      .slice(0, this.deps.keepVersions);
    for (const v of wanted) {
      if (this.closed) return;
      if (cache.has(v.id)) continue;
      await cache.adopt(v, (sha) => files.read(blobKey(sha)));
    }
    if (current) await cache.follow(current);
  }

  /** Copies a version's contents, then its manifest, to the shared store; tells the others. */
  private async share(v: FrontendVersion, makeCurrent: boolean): Promise<void> {
    const { files, store, cache, cluster } = this.deps;
    for (const sha of new Set(v.files.map((f) => f.sha256))) {
      const size = v.files.find((f) => f.sha256 === sha)!.size;
      const there = await files.stat(blobKey(sha));
      if (there?.size === size) continue;
      await files.write(blobKey(sha), createReadStream(cache.blobFile(sha)));
    }
    await store.putBlob(NS, `versions/${v.id}`, JSON.stringify(v));
    if (makeCurrent) await store.putBlob(NS, 'current', JSON.stringify({ versionId: v.id }));
    await cluster.publish(TOPIC, { versionId: v.id });
    this.deps.logger.info({ versionId: v.id, label: v.label }, 'shared the mirrored ComfyUI frontend');
    // A new version may retire old ones; one process a while does the clean-up.
    if (makeCurrent && (await cluster.once('frontend-prune', 10 * 60_000))) await this.prune();
  }

  /**
   * Keeps the shared copy bounded: manifests beyond twice FRONTEND_KEEP_VERSIONS (the current one
   * and the most recently offered first) are dropped, then contents no kept manifest names, once
   * they are an hour old (younger ones may belong to a version being shared at this moment).
   */
  async prune(): Promise<{ versions: number; contents: number }> {
    const { store, files } = this.deps;
    const now = (this.deps.clock ?? Date.now)();
    const current = await readCurrent(store);
    const all: FrontendVersion[] = [];
    for (const key of await store.listBlobs(NS, 'versions/')) {
      const raw = await store.getBlob(NS, key);
      const parsed = raw ? versionFileSchema.safeParse(safeJson(raw)) : null;
      if (parsed?.success) all.push(parsed.data);
      else await store.deleteBlob(NS, key);
    }
    all.sort((a, b) => Number(b.id === current) - Number(a.id === current) || b.offeredAt - a.offeredAt);
    const keep = all.slice(0, Math.max(1, this.deps.keepVersions) * 2);
    let versions = 0;
    for (const v of all.slice(keep.length)) {
      if (await store.deleteBlob(NS, `versions/${v.id}`)) versions++;
    }
    const named = new Set(keep.flatMap((v) => v.files.map((f) => blobKey(f.sha256))));
    let contents = 0;
    for (const f of await files.list('.frontend/blobs/')) {
      if (named.has(f.key) || now - f.mtimeMs < PRUNE_MIN_AGE_MS) continue;
      if (await files.delete(f.key)) contents++;
    }
    if (versions + contents > 0) {
      this.deps.logger.info({ versions, contents }, 'pruned old shared ComfyUI frontend versions');
    }
    return { versions, contents };
  }

  private async shareCurrent(id: string): Promise<void> {
    await this.deps.store.putBlob(NS, 'current', JSON.stringify({ versionId: id }));
    await this.deps.cluster.publish(TOPIC, { versionId: id });
  }

  private track(p: Promise<void>): void {
    const q = p.catch((err: unknown) =>
      this.deps.logger.warn({ err }, 'could not share the mirrored ComfyUI frontend'),
    );
    this.publishing.add(q);
    void q.finally(() => this.publishing.delete(q));
  }
}

function safeJson(raw: string): unknown {
  try {
    return JSON.parse(raw);
  } catch {
    return null;
  }
}

async function readCurrent(store: BlobStore): Promise<string | null> {
  const raw = await store.getBlob(NS, 'current');
  if (!raw) return null;
  try {
    const id = (JSON.parse(raw) as { versionId?: unknown }).versionId;
    return typeof id === 'string' ? id : null;
  } catch {
    return null;
  }
}
