/**
 * Participants' own LoRAs: files in the user's `loras` area of the FileStore
 * (`<user>/loras/<name>.safetensors`), with an index per user (blob `loras/<user>`: name → size,
 * sha256, upload time) so listings, quotas and the workers' cache (keyed by sha256) never read a
 * file. Each upload is checked as a safetensors file while it streams to a staging key, then
 * moved into place under a per-user lock that re-checks the quota, so two uploads at once cannot
 * pass it together.
 */
import { createHash, randomUUID } from 'node:crypto';
import { pipeline, Transform, type Readable } from 'node:stream';
import { AppError } from '../errors.js';
import type { FileStat, FileStore } from '../files/file-store.js';
import { userFileKey } from '../files/safe-path.js';
import { KeyedLock } from '../gateway/lock.js';
import type { Config } from '../config/schema.js';
import type { BlobStore } from '../store/types.js';
import { checkLoraName, SafetensorsCheck } from './safetensors.js';

export const LORA_NAMESPACE = 'loras';

export interface LoraEntry {
  name: string;
  size: number;
  sha256: string;
  uploadedAt: number;
}

export interface LoraLimits {
  /** LORA_UPLOAD_LIMIT: the largest LoRA file, in bytes. */
  maxFileBytes: number;
  /** LORA_QUOTA: the most LoRA bytes one participant may keep. */
  quotaBytes: number;
}

export interface LoraUsage {
  count: number;
  bytes: number;
}

/** 1.5 GB, 500 MB: sizes as a participant reads them (binary units, as the config parses them). */
export function readableBytes(n: number): string {
  for (const [unit, name] of [
    [1024 ** 3, 'GB'],
    [1024 ** 2, 'MB'],
    [1024, 'KB'],
  ] as const)
    if (n >= unit) return `${Number((n / unit).toFixed(1)).toString()} ${name}`;
  return `${n} bytes`;
}

/** Every participant's LoRA use, from the indexes alone (the dashboard's participants table). */
export async function loraUsageByUser(blobs: BlobStore): Promise<Map<string, LoraUsage>> {
  const out = new Map<string, LoraUsage>();
  for (const user of await blobs.listBlobs(LORA_NAMESPACE)) {
    const all = Object.values(await readIndex(blobs, user));
    out.set(user, { count: all.length, bytes: all.reduce((a, e) => a + e.size, 0) });
  }
  return out;
}

/** A user's index: name → entry (empty when they have none, or it cannot be read). */
async function readIndex(blobs: BlobStore, user: string): Promise<Record<string, LoraEntry>> {
  const raw = await blobs.getBlob(LORA_NAMESPACE, user);
  if (raw === null) return {};
  try {
    const parsed = JSON.parse(raw) as { files?: Record<string, LoraEntry> };
    return parsed.files && typeof parsed.files === 'object' ? parsed.files : {};
  } catch {
    return {};
  }
}

/** One lock per process: the gateway's routes and tests share it. */
const locks = new KeyedLock();

export class LoraLibrary {
  constructor(
    private readonly files: FileStore,
    private readonly blobs: BlobStore,
    readonly limits: LoraLimits,
    private readonly clock: () => number = Date.now,
  ) {}

  private index(user: string): Promise<Record<string, LoraEntry>> {
    return readIndex(this.blobs, user);
  }

  private async saveIndex(user: string, files: Record<string, LoraEntry>): Promise<void> {
    if (Object.keys(files).length === 0) await this.blobs.deleteBlob(LORA_NAMESPACE, user);
    else await this.blobs.putBlob(LORA_NAMESPACE, user, JSON.stringify({ files }));
  }

  /** The user's LoRAs, sorted by name. */
  async list(user: string): Promise<LoraEntry[]> {
    return Object.values(await this.index(user)).sort((a, b) =>
      a.name < b.name ? -1 : a.name > b.name ? 1 : 0,
    );
  }

  /** The user's LoRA names, sorted (what their loader lists add). */
  async names(user: string): Promise<string[]> {
    return (await this.list(user)).map((e) => e.name);
  }

  async get(user: string, name: string): Promise<LoraEntry | null> {
    const idx = await this.index(user);
    return Object.hasOwn(idx, name) ? idx[name]! : null;
  }

  async usage(user: string): Promise<LoraUsage> {
    const all = await this.list(user);
    return { count: all.length, bytes: all.reduce((a, e) => a + e.size, 0) };
  }

  key(user: string, name: string): string {
    return userFileKey(user, 'loras', name);
  }

  /** The 413 of a LoRA larger than LORA_UPLOAD_LIMIT, with the limit in the message. */
  tooLarge(): AppError {
    return new AppError(
      'PAYLOAD_TOO_LARGE',
      `The LoRA is larger than the limit of ${readableBytes(this.limits.maxFileBytes)} per file (LORA_UPLOAD_LIMIT).`,
    );
  }

  /** `atLeast`: the upload was stopped there, so its whole size is not known. */
  private quotaError(used: number, adding: number, atLeast = false): AppError {
    const q = this.limits.quotaBytes;
    return new AppError(
      'LORA_QUOTA_EXCEEDED',
      `This LoRA (${atLeast ? 'more than ' : ''}${readableBytes(adding)}) does not fit in your LoRA space: ${readableBytes(used)} of ${readableBytes(q)} (LORA_QUOTA) are in use. Delete a LoRA you no longer need, or ask the instructor for more room.`,
    );
  }

  /**
   * Checks and stores one upload. An existing LoRA of the same name is replaced (its bytes do not
   * count against the quota of its replacement).
   */
  async upload(user: string, rawName: string, body: Readable): Promise<LoraEntry> {
    const name = checkLoraName(rawName);
    const { maxFileBytes } = this.limits;
    const tooLarge = () => this.tooLarge();
    const room = async () => {
      const idx = await this.index(user);
      const used = Object.values(idx).reduce((a, e) => a + (e.name === name ? 0 : e.size), 0);
      return { used, free: this.limits.quotaBytes - used };
    };
    // Counted while streaming: a request's declared length is the form's, not the file's (and may
    // be absent). The quota is checked against what was free at the start; the commit below
    // checks again under the lock, so two uploads at once cannot both pass it.
    const start = await room();
    const limit = Math.min(maxFileBytes, Math.max(0, start.free));
    const hash = createHash('sha256');
    let size = 0;
    const meter = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        size += chunk.length;
        if (size > maxFileBytes) return cb(tooLarge());
        if (size > limit) return cb(new AppError('LORA_QUOTA_EXCEEDED'));
        hash.update(chunk);
        cb(null, chunk);
      },
    });
    const check = new SafetensorsCheck();
    const staging = userFileKey(user, 'loras', '.uploads', randomUUID());
    let failure: unknown;
    const stream = pipeline(body, meter, check, (err) => {
      if (err) failure ??= err;
    });
    let stat: FileStat;
    try {
      stat = await this.files.write(staging, stream);
    } catch (err) {
      const cause = failure ?? err;
      if (cause instanceof AppError && cause.code === 'LORA_QUOTA_EXCEEDED')
        throw this.quotaError(start.used, limit, true);
      throw cause;
    }
    if (failure) {
      await this.files.delete(staging).catch(() => false);
      throw failure;
    }
    const sha256 = hash.digest('hex');
    return locks.run(user, async () => {
      try {
        const { used, free } = await room();
        if (stat.size > free) throw this.quotaError(used, stat.size);
        await this.files.move(staging, this.key(user, name));
      } catch (err) {
        await this.files.delete(staging).catch(() => false);
        throw err;
      }
      const entry: LoraEntry = { name, size: stat.size, sha256, uploadedAt: this.clock() };
      const idx = await this.index(user);
      idx[name] = entry;
      await this.saveIndex(user, idx);
      return entry;
    });
  }

  /** Deletes one LoRA; false when the user has none of that name. */
  async remove(user: string, name: string): Promise<boolean> {
    return locks.run(user, async () => {
      const idx = await this.index(user);
      if (!Object.hasOwn(idx, name)) return false;
      delete idx[name];
      // The index first: a LoRA gone from the index is gone for every list and every worker,
      // even if removing the file fails.
      await this.saveIndex(user, idx);
      await this.files.delete(this.key(user, name)).catch(() => false);
      return true;
    });
  }

  /** The stored file of one of the user's LoRAs, for a worker running that user's job. */
  async open(user: string, name: string): Promise<{ entry: LoraEntry; stream: Readable }> {
    const entry = await this.get(user, name);
    if (!entry) throw new AppError('FILE_NOT_FOUND', 'The job names a LoRA its owner does not have.');
    return { entry, stream: await this.files.read(this.key(user, name)) };
  }
}

/** The LoRA library of a control plane: its file store, state store and LORA_* limits. */
export function loraLibraryOf(s: {
  files: FileStore;
  store: BlobStore;
  config: Pick<Config, 'LORA_UPLOAD_LIMIT' | 'LORA_QUOTA'>;
}): LoraLibrary {
  return new LoraLibrary(s.files, s.store, {
    maxFileBytes: s.config.LORA_UPLOAD_LIMIT,
    quotaBytes: s.config.LORA_QUOTA,
  });
}
