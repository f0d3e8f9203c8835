/**
 * The FileStore conformance suite against a real S3-compatible server (s3rver, a child process on
 * a free port), plus what only object storage has: prefixes, paging, presigned URLs, clear errors.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { S3RVER_CREDENTIALS, startS3Server, type S3ServerHandle } from '../../test/support/s3-server.js';
import { runFileStoreConformance } from './file-store.conformance.js';
import { classifyS3Error, createS3Client } from './s3-client.js';
import { S3FileStore, type S3FileStoreOptions } from './s3-file-store.js';

let server: S3ServerHandle;
const opened: S3FileStore[] = [];

beforeAll(async () => {
  server = await startS3Server({ buckets: ['files'] });
});

afterAll(async () => {
  for (const s of opened) s.close();
  await server?.stop();
});

function open(extra: Partial<S3FileStoreOptions> = {}): S3FileStore {
  const store = new S3FileStore({
    bucket: 'files',
    prefix: `t-${randomUUID()}/`,
    endpoint: server.endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: S3RVER_CREDENTIALS,
    // Small pages exercise ListObjectsV2 continuation; two 5 MiB parts in flight keep the memory
    // held by an upload near 30 MiB, well below the 64 MiB file the suite streams.
    pageSize: 7,
    partSize: 5 * 1024 * 1024,
    queueSize: 2,
    ...extra,
  });
  opened.push(store);
  return store;
}

async function wipe(store: S3FileStore): Promise<void> {
  for (const f of await store.list('')) await store.delete(f.key);
}

runFileStoreConformance('s3 (s3rver)', async () => {
  const store = open();
  return { store, cleanup: () => wipe(store) };
});

describe('S3FileStore specifics', () => {
  it('keeps every object under its prefix, and stores with other prefixes do not see each other', async () => {
    const a = open({ prefix: 'shared/a' });
    const b = open({ prefix: 'shared/ab' });
    await a.write('user001/input/x.png', Buffer.from('a'));
    await b.write('user001/input/y.png', Buffer.from('b'));
    expect((await a.list('')).map((f) => f.key)).toEqual(['user001/input/x.png']);
    expect((await b.list('')).map((f) => f.key)).toEqual(['user001/input/y.png']);
    expect(a.location).toBe('s3://files/shared/a/');
    await wipe(a);
    await wipe(b);
  });

  it('presigned PUT and GET URLs work without credentials', async () => {
    const store = open();
    const key = 'user001/output/job 1/ünï (1).png';
    const put = await store.presignPut(key, 300);
    expect(put).toContain('X-Amz-Signature=');
    expect(put).toContain('X-Amz-Expires=300');
    const res = await fetch(put, { method: 'PUT', body: 'straight from the worker' });
    expect(res.status).toBe(200);
    expect((await store.stat(key))?.size).toBe('straight from the worker'.length);
    const get = await fetch(await store.presignGet(key, 60));
    expect(await get.text()).toBe('straight from the worker');
    await expect(store.presignPut(key, 0)).rejects.toThrow(RangeError);
    await wipe(store);
  });

  it('multipart uploads above the part size', async () => {
    const store = open({ partSize: 5 * 1024 * 1024 });
    const size = 12 * 1024 * 1024 + 3;
    const body = Buffer.alloc(size, 7);
    const { Readable } = await import('node:stream');
    const s = await store.write(
      'user001/output/j/big.bin',
      Readable.from([body.subarray(0, 6e6), body.subarray(6e6)]),
    );
    expect(s.size).toBe(size);
    await wipe(store);
  });

  it('turns wrong credentials, a missing bucket and an unreachable endpoint into clear errors', async () => {
    const wrongKey = open({ credentials: { accessKeyId: 'NOT-A-KEY', secretAccessKey: 'x' } });
    const noBucket = open({ bucket: 'no-such-bucket' });
    const unreachable = open({ endpoint: 'http://127.0.0.1:9', maxAttempts: 1 });
    const problems = await Promise.all(
      [wrongKey, noBucket, unreachable].map((s) =>
        s.check().then(
          () => null,
          (e: unknown) => classifyS3Error(e),
        ),
      ),
    );
    expect(problems.map((p) => p?.problem)).toEqual(['credentials', 'bucket', 'unreachable']);
    expect(createS3Client({ region: 'auto', forcePathStyle: true })).toBeTruthy();
  });
});
