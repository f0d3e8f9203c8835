/**
 * `FileStore` on S3-compatible object storage (`FILES=s3`): AWS S3, Cloudflare R2, MinIO.
 *
 * - Objects live at `<S3_PREFIX><key>`; keys are re-checked with `safeRelativePath`, as locally.
 * - Reads stream the `GetObject` body; writes stream through `@aws-sdk/lib-storage` `Upload`:
 *   one `PutObject` below `partSize`, else a multipart upload with at most `queueSize` parts of
 *   `partSize` bytes in flight, however large the file (default 2 × 8 MiB: about 40 MB held at
 *   the peak of one upload, measured; see bench/backup.ts).
 *   An object appears only when the upload completes, so readers never see half a file; a
 *   failed or aborted body leaves nothing (the multipart upload is aborted).
 * - `list` pages through ListObjectsV2; `move` is CopyObject + DeleteObject (streamed copy above
 *   5 GiB, the CopyObject limit).
 * - `presignPut` / `presignGet` give time-limited URLs (SigV4 query signing, see s3-presign.ts).
 */
import {
  CopyObjectCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { PassThrough, Readable } from 'node:stream';
import { AppError } from '../errors.js';
import type { FileStat, FileStore, ReadRange } from './file-store.js';
import {
  createS3Client,
  copySource,
  isNotFound,
  normalizePrefix,
  type S3ClientSettings,
  type S3Credentials,
} from './s3-client.js';
import { objectUrl, presignUrl } from './s3-presign.js';
import { safeRelativePath } from './safe-path.js';

export interface S3FileStoreOptions extends S3ClientSettings {
  bucket: string;
  /** Key prefix of every object, e.g. `workshop-2025/` (default none). */
  prefix?: string | undefined;
  /** An existing client instead of creating one from the settings (the store never destroys it). */
  client?: S3Client;
  /** Multipart part size in bytes (≥ 5 MiB). Default 8 MiB. */
  partSize?: number;
  /**
   * Parts uploaded in parallel per file. Default 2. An upload holds roughly
   * (queueSize + 1) × partSize × 1.5 bytes at its peak, whatever the file size.
   */
  queueSize?: number;
  /** Keys per ListObjectsV2 page (1…1000). Default 1000. */
  pageSize?: number;
}

const MiB = 1024 * 1024;

/** The first `n` bytes of `source`, which is destroyed once they have passed. */
function limitBytes(source: Readable, n: number): Readable {
  let left = n;
  const out = new PassThrough();
  source.on('error', (err) => out.destroy(err));
  source.on('data', (c: Buffer) => {
    if (left <= 0) return;
    const part = c.length > left ? c.subarray(0, left) : c;
    left -= part.length;
    if (!out.write(part)) source.pause();
    if (left <= 0) {
      out.end();
      source.destroy();
    }
  });
  out.on('drain', () => source.resume());
  out.on('close', () => source.destroy());
  source.on('end', () => out.end());
  return out;
}

const isInvalidRange = (err: unknown) => {
  const e = err as { name?: string; Code?: string; $metadata?: { httpStatusCode?: number } };
  return e?.name === 'InvalidRange' || e?.Code === 'InvalidRange' || e?.$metadata?.httpStatusCode === 416;
};
const MAX_COPY = 5 * 1024 * MiB;

export class S3FileStore implements FileStore {
  readonly backend = 's3' as const;
  readonly bucket: string;
  /** `''` or ends in `/`. */
  readonly prefix: string;
  readonly client: S3Client;
  private readonly ownsClient: boolean;
  private readonly partSize: number;
  private readonly queueSize: number;
  private readonly pageSize: number;

  constructor(private readonly opts: S3FileStoreOptions) {
    if (!opts.bucket) throw new Error('S3FileStore needs a bucket');
    this.bucket = opts.bucket;
    this.prefix = normalizePrefix(opts.prefix);
    this.ownsClient = !opts.client;
    this.client = opts.client ?? createS3Client(opts);
    this.partSize = Math.max(5 * MiB, opts.partSize ?? 8 * MiB);
    this.queueSize = Math.max(1, opts.queueSize ?? 2);
    this.pageSize = Math.min(1000, Math.max(1, opts.pageSize ?? 1000));
  }

  /** `s3://bucket/prefix`, for messages. */
  get location(): string {
    return `s3://${this.bucket}/${this.prefix}`;
  }

  private objectKey(key: string): string {
    const rel = safeRelativePath(key);
    if (!rel) throw new AppError('INVALID_PATH', 'A file key may not be empty.');
    return this.prefix + rel;
  }

  async write(key: string, body: Readable | Buffer): Promise<FileStat> {
    const Key = this.objectKey(key);
    if (Buffer.isBuffer(body)) {
      await this.client.send(
        new PutObjectCommand({ Bucket: this.bucket, Key, Body: body, ContentLength: body.length }),
      );
    } else {
      // The caller's stream error (e.g. PAYLOAD_TOO_LARGE from a size meter) is the one to report.
      let sourceError: unknown;
      const onError = (err: unknown) => {
        sourceError ??= err;
      };
      body.on('error', onError);
      const upload = new Upload({
        client: this.client,
        params: { Bucket: this.bucket, Key, Body: body },
        partSize: this.partSize,
        queueSize: this.queueSize,
        leavePartsOnError: false,
      });
      try {
        await upload.done();
      } catch (err) {
        // Stop the source (e.g. an upload still arriving from a client); its later errors stay
        // caught by onError, which is left attached so none of them can go unhandled.
        body.destroy();
        throw sourceError ?? err;
      }
      if (sourceError) throw sourceError;
    }
    const s = await this.stat(key);
    if (!s) throw new Error(`S3 object ${Key} is missing right after it was written`);
    return s;
  }

  async read(key: string, range?: ReadRange): Promise<Readable> {
    const Key = this.objectKey(key);
    if (range && range.end !== undefined && range.end < range.start) {
      if (!(await this.stat(key))) throw new AppError('FILE_NOT_FOUND');
      return Readable.from([]);
    }
    try {
      // A range goes to the bucket as a `Range` header: only those bytes cross the network.
      const Range = range ? `bytes=${range.start}-${range.end ?? ''}` : undefined;
      const r = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key, Range }));
      let body: Readable;
      if (r.Body instanceof Readable) body = r.Body;
      else if (r.Body && Symbol.asyncIterator in r.Body)
        body = Readable.from(r.Body as AsyncIterable<Uint8Array>);
      else throw new Error('S3 GetObject returned no stream');
      if (!range) return body;
      const served = /^bytes (\d+)-(\d+)\//.exec(r.ContentRange ?? '');
      if (!served || Number(served[1]) !== range.start) {
        body.destroy();
        throw new Error(
          `The bucket ignored the Range of a read (asked ${Range}, got ${r.ContentRange ?? 'none'})`,
        );
      }
      // Some S3-compatible servers (s3rver) answer `bytes=0-0` with the rest of the object.
      const wanted = range.end === undefined ? Infinity : range.end - range.start + 1;
      return Number(served[2]) - range.start + 1 > wanted ? limitBytes(body, wanted) : body;
    } catch (err) {
      if (isNotFound(err)) throw new AppError('FILE_NOT_FOUND');
      // 416 from the bucket: the range starts past the end (the contract says: no bytes).
      if (range && isInvalidRange(err)) return Readable.from([]);
      throw err;
    }
  }

  async stat(key: string): Promise<FileStat | null> {
    const Key = this.objectKey(key);
    try {
      const h = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key }));
      return {
        key: safeRelativePath(key),
        size: h.ContentLength ?? 0,
        mtimeMs: h.LastModified?.getTime() ?? 0,
      };
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
  }

  async list(prefix: string): Promise<FileStat[]> {
    const rel = safeRelativePath(prefix);
    const Prefix = this.prefix + (rel ? `${rel}/` : '');
    const out: FileStat[] = [];
    let ContinuationToken: string | undefined;
    do {
      const page = await this.client.send(
        new ListObjectsV2Command({ Bucket: this.bucket, Prefix, ContinuationToken, MaxKeys: this.pageSize }),
      );
      for (const o of page.Contents ?? []) {
        if (!o.Key || o.Key.endsWith('/')) continue; // folder markers made by other tools
        out.push({
          key: o.Key.slice(this.prefix.length),
          size: o.Size ?? 0,
          mtimeMs: o.LastModified?.getTime() ?? 0,
        });
      }
      ContinuationToken = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (ContinuationToken);
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  async delete(key: string): Promise<boolean> {
    // DeleteObject succeeds whether or not the object existed; the contract wants to know.
    if (!(await this.stat(key))) return false;
    await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key) }));
    return true;
  }

  async move(from: string, to: string): Promise<void> {
    const s = await this.stat(from);
    if (!s) throw new AppError('FILE_NOT_FOUND');
    const src = this.objectKey(from);
    const dest = this.objectKey(to);
    if (src === dest) return;
    if (s.size <= MAX_COPY) {
      await this.client.send(
        new CopyObjectCommand({ Bucket: this.bucket, Key: dest, CopySource: copySource(this.bucket, src) }),
      );
    } else {
      await this.write(to, await this.read(from));
    }
    await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: src }));
  }

  /** A URL that lets anyone holding it PUT this key for `expiresSec` seconds (e.g. a worker's output). */
  async presignPut(key: string, expiresSec: number): Promise<string> {
    return this.presign('PUT', key, expiresSec);
  }

  /** A URL that lets anyone holding it GET this key for `expiresSec` seconds. */
  async presignGet(key: string, expiresSec: number): Promise<string> {
    return this.presign('GET', key, expiresSec);
  }

  private async presign(method: 'GET' | 'PUT', key: string, expiresSec: number): Promise<string> {
    const credentials: S3Credentials = await this.client.config.credentials();
    const region = await this.client.config.region();
    const endpoint = this.opts.endpoint;
    const url = objectUrl({
      endpoint,
      region,
      forcePathStyle: this.opts.forcePathStyle,
      bucket: this.bucket,
      key: this.objectKey(key),
    });
    return presignUrl({ method, url, region, credentials, expiresSec });
  }

  /** One cheap request that proves the bucket exists and the credentials may list it. */
  async check(): Promise<void> {
    await this.client.send(
      new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.prefix, MaxKeys: 1 }),
    );
  }

  close(): void {
    if (this.ownsClient) this.client.destroy();
  }
}
