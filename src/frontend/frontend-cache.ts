/**
 * Mirrored ComfyUI web frontends on disk, one folder per version, filled by worker agents (see
 * "frontend mirror" in src/worker/protocol.ts) and served while no worker is online.
 *
 * Layout under FRONTEND_CACHE_DIR (folders 0700, files 0600: only this process reads them):
 *
 *     blobs/<sha256>              each content once; an upload lands here after its hash is checked
 *     versions/<versionId>/...    a version's files at their site paths (hard links to blobs)
 *     manifests/<versionId>.json  what the version holds, who sent it, when it was last offered
 *     current.json                {"versionId": ...}: the version served at /<user>/
 *     encoded/<sha256>.br|.gz     compressed copies of text files, made once (precompress.ts)
 *     tmp/                        uploads and versions being assembled (emptied at start-up)
 *
 * A version folder appears whole (assembled in tmp/, then renamed), so a crash never leaves half a
 * frontend to serve. Contents already held from an earlier version are never sent again. The file
 * operations behind this layout (checked uploads, assembly, atomic writes) are in cache-files.ts.
 */
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { z } from 'zod';
import { AppError } from '../errors.js';
import {
  frontendFileSchema,
  type FrontendFile,
  type FrontendOffer,
  type FrontendOfferAnswer,
} from '../worker/protocol.js';
import {
  DIR_MODE,
  assembleVersion,
  blobPath,
  isDir,
  isFile,
  missingBlobs,
  storeBlob,
  writeAtomic,
} from './cache-files.js';
import { isCompressible, Precompressor, type EncodedCopies } from './precompress.js';

/** One mirrored frontend version. */
export interface FrontendVersion {
  /** First 16 hex digits of the sha256 over its sorted `path NUL sha256` lines. */
  id: string;
  /** What instructors see, e.g. `frontend 1.45.0` or `from ComfyUI 0.3.64`. */
  label: string;
  source: 'http' | 'dir';
  comfyuiVersion: string;
  frontendVersion: string | null;
  files: FrontendFile[];
  bytes: number;
  /** The worker that sent it. */
  workerId: string;
  /** When it was assembled (epoch ms). */
  createdAt: number;
  /** When a worker last offered it (epoch ms); the newest offered versions are the ones kept. */
  offeredAt: number;
}

export const versionFileSchema = z.object({
  id: z.string().regex(/^[0-9a-f]{16}$/),
  label: z.string(),
  source: z.enum(['http', 'dir']),
  comfyuiVersion: z.string(),
  frontendVersion: z.string().nullable(),
  files: z.array(frontendFileSchema),
  bytes: z.number(),
  workerId: z.string(),
  createdAt: z.number(),
  offeredAt: z.number(),
});

export interface FrontendCacheOptions {
  root: string;
  /** Versions kept on disk (the current one always among them). */
  keepVersions: number;
  logger: Logger;
  /** How long an offer waits for its contents. Default 30 minutes. */
  pendingTtlMs?: number;
  clock?: () => number;
  /**
   * The same cache holds ComfyUI's template library (src/templates/library.ts): what instructors
   * see as a version's label, and what log lines call the mirrored thing. Defaults: the frontend's.
   */
  labelOf?: (offer: FrontendOffer) => string;
  what?: string;
}

interface PendingOffer {
  version: FrontendVersion;
  /** sha256 → declared size, for every content of the offer. */
  sizes: Map<string, number>;
  expiresAt: number;
}

/** The version id of a set of files: independent of their order. */
export function versionIdOf(files: readonly Pick<FrontendFile, 'path' | 'sha256'>[]): string {
  const lines = files.map((f) => `${f.path}\0${f.sha256}\n`).sort();
  const h = createHash('sha256');
  for (const l of lines) h.update(l);
  return h.digest('hex').slice(0, 16);
}

/**
 * Events for sharing versions with other control-plane processes (frontend-share.ts): `version` when
 * a worker's upload was assembled here (it is then the current one), `current` when an instructor
 * chose another version. Versions adopted from the shared copy raise neither.
 */
interface CacheEvents {
  version: [FrontendVersion];
  current: [string];
}

export class FrontendCache extends EventEmitter<CacheEvents> {
  private readonly versions = new Map<string, FrontendVersion>();
  private readonly pending = new Map<string, PendingOffer>();
  private currentId: string | null = null;
  /** Assembly and clean-up run one at a time. */
  private chain: Promise<unknown> = Promise.resolve();
  private readonly clock: () => number;
  private readonly ttl: number;
  private readonly precompressor: Precompressor;

  private constructor(private readonly opts: FrontendCacheOptions) {
    super();
    this.clock = opts.clock ?? Date.now;
    this.ttl = opts.pendingTtlMs ?? 30 * 60_000;
    this.precompressor = new Precompressor(join(opts.root, 'encoded'), join(opts.root, 'tmp'), opts.logger);
  }

  /** Opens (creating if needed) the cache folder and loads the versions it holds. */
  static async open(opts: FrontendCacheOptions): Promise<FrontendCache> {
    const cache = new FrontendCache(opts);
    await cache.load();
    return cache;
  }

  get root(): string {
    return this.opts.root;
  }

  /** The version served now, or null before any worker sent one. */
  current(): FrontendVersion | null {
    return this.currentId ? (this.versions.get(this.currentId) ?? null) : null;
  }

  /** Every kept version: the current one first, then the most recently offered. */
  list(): FrontendVersion[] {
    const cur = this.currentId;
    return [...this.versions.values()].sort(
      (a, b) => Number(b.id === cur) - Number(a.id === cur) || b.offeredAt - a.offeredAt,
    );
  }

  /** The brotli/gzip copies of a content, once made (served instead when the browser takes them). */
  encodedCopiesOf(sha256: string): EncodedCopies | undefined {
    return this.precompressor.copiesOf(sha256);
  }

  /** Stops making compressed copies (at shutdown); what is made so far stays. */
  close(): Promise<void> {
    return this.precompressor.close();
  }

  /** Resolves once every kept version's compressed copies have been made. */
  precompressed(): Promise<void> {
    return this.precompressor.idle();
  }

  /** The folder holding a version's files. */
  dirOf(id: string): string {
    return join(this.opts.root, 'versions', id);
  }

  /**
   * A worker offers the frontend its ComfyUI serves. The answer lists the contents to upload (none,
   * when every content is held from earlier versions: then it is assembled right away); a new
   * version becomes the current one once complete. A version already held is only marked as still
   * in use: re-offering it (every worker does on each reconnect) does not switch the current one
   * back, so two workers with different frontends do not take turns (see {@link use}).
   */
  async offer(offer: FrontendOffer, workerId: string): Promise<FrontendOfferAnswer> {
    const id = versionIdOf(offer.files);
    const now = this.clock();
    const held = this.versions.get(id);
    if (held) {
      held.offeredAt = now;
      await this.serialize(async () => {
        await this.writeManifest(held);
        if (!this.current()) await this.setCurrent(id);
      });
      return { versionId: id, status: 'present', missing: [] };
    }
    this.dropExpired(now);
    const sizes = new Map<string, number>();
    for (const f of offer.files) sizes.set(f.sha256, f.size);
    const version: FrontendVersion = {
      id,
      label: this.opts.labelOf
        ? this.opts.labelOf(offer)
        : offer.frontendVersion
          ? `frontend ${offer.frontendVersion}`
          : `from ComfyUI ${offer.comfyuiVersion}`,
      source: offer.source,
      comfyuiVersion: offer.comfyuiVersion,
      frontendVersion: offer.frontendVersion,
      files: offer.files,
      bytes: offer.files.reduce((n, f) => n + f.size, 0),
      workerId,
      createdAt: now,
      offeredAt: now,
    };
    this.pending.set(id, { version, sizes, expiresAt: now + this.ttl });
    const missing = await this.missingBlobs(sizes.keys());
    if (missing.length === 0) return this.complete(id);
    return { versionId: id, status: 'pending', missing };
  }

  /**
   * Stores one uploaded content after checking its size and sha256 against a pending offer.
   * CONFLICT when no pending offer names it (offer again), HASH_MISMATCH when it differs.
   */
  async receive(sha256: string, body: Readable): Promise<{ sha256: string; size: number }> {
    this.dropExpired(this.clock());
    const expected = this.expectedSize(sha256);
    if (expected === null) {
      body.resume();
      throw new AppError(
        'CONFLICT',
        `No pending ${this.opts.what ?? 'frontend'} offer names this content; offer it again.`,
      );
    }
    const final = this.blobPath(sha256);
    if (await isFile(final)) {
      body.resume();
      return { sha256, size: expected };
    }
    return this.storeBlob(sha256, expected, body);
  }

  /** Streams `body` into blobs/ if its size and sha256 are the expected ones. */
  private storeBlob(
    sha256: string,
    expected: number,
    body: Readable,
  ): Promise<{ sha256: string; size: number }> {
    return storeBlob(this.opts.root, sha256, expected, body);
  }

  /**
   * Assembles a pending version once every content has arrived and makes it the current one.
   * FRONTEND_INCOMPLETE (with `details.missing`) when some have not; NOT_FOUND for an unknown or
   * expired offer (offer again).
   */
  complete(id: string): Promise<FrontendOfferAnswer> {
    return this.serialize(async () => {
      if (this.versions.has(id)) {
        this.pending.delete(id);
        await this.setCurrent(id);
        return { versionId: id, status: 'present' as const, missing: [] };
      }
      const p = this.pending.get(id);
      if (!p) throw new AppError('NOT_FOUND', `No pending frontend offer ${id}; offer the frontend again.`);
      const missing = await this.missingBlobs(p.sizes.keys());
      if (missing.length > 0) {
        throw new AppError('FRONTEND_INCOMPLETE', `${missing.length} contents have not arrived.`, {
          details: { missing },
        });
      }
      await this.assemble(p.version);
      this.pending.delete(id);
      this.versions.set(id, p.version);
      await this.writeManifest(p.version);
      await this.setCurrent(id);
      await this.collectGarbage();
      this.precompress(p.version);
      const v = p.version;
      this.emit('version', v);
      this.opts.logger.info(
        { versionId: id, label: v.label, files: v.files.length, bytes: v.bytes, workerId: v.workerId },
        `mirrored the ${this.opts.what ?? 'ComfyUI frontend'} from a worker`,
      );
      return { versionId: id, status: 'present' as const, missing: [] };
    });
  }

  /** Serves a version held on disk from now on (an instructor's choice). NOT_FOUND if not held. */
  use(id: string): Promise<FrontendVersion> {
    return this.serialize(async () => {
      const v = this.versions.get(id);
      if (!v) throw new AppError('NOT_FOUND', `No mirrored frontend version ${id}.`);
      await this.setCurrent(id);
      this.opts.logger.info({ versionId: id, label: v.label }, 'serving another mirrored frontend version');
      this.emit('current', id);
      return v;
    });
  }

  /** Whether this version is held on disk. */
  has(id: string): boolean {
    return this.versions.has(id);
  }

  /** Where a held content lives on disk (for copying it to the shared store). */
  blobFile(sha256: string): string {
    return this.blobPath(sha256);
  }

  /**
   * Adds a version another process mirrored, fetching the contents not held here through `fetch`
   * (each checked against its size and sha256). It does not become the current one unless none
   * is; see {@link follow}. False when it was held already.
   */
  adopt(v: FrontendVersion, fetch: (sha256: string) => Promise<Readable>): Promise<boolean> {
    return this.serialize(async () => {
      if (this.versions.has(v.id) || versionIdOf(v.files) !== v.id) return false;
      const sizes = new Map(v.files.map((f) => [f.sha256, f.size]));
      for (const sha of await this.missingBlobs(sizes.keys())) {
        await this.storeBlob(sha, sizes.get(sha)!, await fetch(sha));
      }
      await this.assemble(v);
      this.versions.set(v.id, v);
      await this.writeManifest(v);
      if (!this.current()) await this.setCurrent(v.id);
      await this.collectGarbage();
      this.precompress(v);
      this.opts.logger.info(
        { versionId: v.id, label: v.label, files: v.files.length },
        'copied a mirrored ComfyUI frontend from the shared store',
      );
      return true;
    });
  }

  /** Serves a held version from now on because another process chose it; false if not held. */
  follow(id: string): Promise<boolean> {
    return this.serialize(async () => {
      if (!this.versions.has(id)) return false;
      await this.setCurrent(id);
      return true;
    });
  }

  // ---- internals ---------------------------------------------------------------------------

  private serialize<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn, fn);
    this.chain = run.catch(() => undefined);
    return run;
  }

  private blobPath(sha256: string): string {
    return blobPath(this.opts.root, sha256);
  }

  private expectedSize(sha256: string): number | null {
    for (const p of this.pending.values()) {
      const size = p.sizes.get(sha256);
      if (size !== undefined) return size;
    }
    return null;
  }

  private dropExpired(now: number): void {
    for (const [id, p] of this.pending) if (p.expiresAt <= now) this.pending.delete(id);
  }

  private missingBlobs(shas: Iterable<string>): Promise<string[]> {
    return missingBlobs(this.opts.root, shas);
  }

  /** Links every file of the version into a fresh folder, then renames it into place. */
  private assemble(v: FrontendVersion): Promise<void> {
    return assembleVersion(this.opts.root, v, this.dirOf(v.id));
  }

  /** Queues the version's text files for compression, in the background. */
  private precompress(v: FrontendVersion): void {
    this.precompressor.add(
      v.files
        .filter((f) => isCompressible(f.path, f.size))
        .map((f) => ({ sha256: f.sha256, path: this.blobPath(f.sha256), rel: f.path })),
    );
  }

  private async writeManifest(v: FrontendVersion): Promise<void> {
    await writeAtomic(join(this.opts.root, 'manifests', `${v.id}.json`), JSON.stringify(v), this.opts.root);
  }

  private async setCurrent(id: string): Promise<void> {
    if (this.currentId === id) return;
    await writeAtomic(
      join(this.opts.root, 'current.json'),
      JSON.stringify({ versionId: id }),
      this.opts.root,
    );
    this.currentId = id;
  }

  /** Keeps the current and the most recently offered versions; deletes contents nobody names. */
  private async collectGarbage(): Promise<void> {
    const keep = this.list().slice(0, this.opts.keepVersions);
    const kept = new Set(keep.map((v) => v.id));
    for (const v of [...this.versions.values()]) {
      if (kept.has(v.id)) continue;
      this.versions.delete(v.id);
      await rm(join(this.opts.root, 'manifests', `${v.id}.json`), { force: true });
      await rm(this.dirOf(v.id), { recursive: true, force: true });
      this.opts.logger.info({ versionId: v.id, label: v.label }, 'deleted an old mirrored frontend');
    }
    const named = new Set<string>();
    for (const v of this.versions.values()) for (const f of v.files) named.add(f.sha256);
    for (const p of this.pending.values()) for (const sha of p.sizes.keys()) named.add(sha);
    for (const name of await readdir(join(this.opts.root, 'blobs'))) {
      if (!named.has(name)) await rm(this.blobPath(name), { force: true });
    }
    await this.precompressor.prune(named);
  }

  private async load(): Promise<void> {
    const root = this.opts.root;
    for (const sub of ['blobs', 'versions', 'manifests', 'tmp', 'encoded'])
      await mkdir(join(root, sub), { recursive: true, mode: DIR_MODE });
    // Uploads and assemblies cut short by a stop or crash.
    for (const name of await readdir(join(root, 'tmp')))
      await rm(join(root, 'tmp', name), { recursive: true, force: true });
    for (const name of await readdir(join(root, 'manifests'))) {
      const v = await readManifest(join(root, 'manifests', name));
      if (v && `${v.id}.json` === name && (await isDir(this.dirOf(v.id)))) this.versions.set(v.id, v);
    }
    const cur = await readFile(join(root, 'current.json'), 'utf8').then(
      (s) => (JSON.parse(s) as { versionId?: unknown }).versionId,
      () => null,
    );
    this.currentId = typeof cur === 'string' && this.versions.has(cur) ? cur : (this.list()[0]?.id ?? null);
    // Versions stored before compressed copies existed, or whose compression a stop cut short.
    await this.precompressor.load();
    for (const v of this.list()) this.precompress(v);
  }
}

async function readManifest(path: string): Promise<FrontendVersion | null> {
  try {
    const parsed = versionFileSchema.safeParse(JSON.parse(await readFile(path, 'utf8')));
    return parsed.success ? parsed.data : null;
  } catch {
    return null;
  }
}
