/**
 * Serving a 1 GiB video by ranges, as a browser's `<video>` asks for it: the compiled control plane
 * (dist/, in its own process, see gateway-server.mjs) serves `/<user>/api/view` from the local
 * file store (a sparse file) and, unless BENCH_RANGES_S3=0, from S3 (a real s3rver child process).
 *
 * - `<store>.first_byte_ms`: `Range: bytes=0-` (what a player asks first), time to the first body byte;
 * - `<store>.tail_first_byte_ms`: a range in the last MiB (where an mp4 without faststart keeps
 *   its `moov`), time to the first byte;
 * - `<store>.seek_ms`: a seek to the middle, `bytes=<mid>-` read for 1 MiB then dropped (as a
 *   player does), time to that MiB; all three are medians of 15 requests;
 * - `<store>.full_mb_per_s`: the whole file streamed once (200);
 * - `<store>.rss_before_mb`, `rss_max_ranges_mb` (at most, sampled every 100 ms, during the 45
 *   range requests), `rss_max_full_mb` (… up to the end of the whole-file stream) and
 *   `rss_after_mb`: the server's resident memory; flat means the file never sits in memory.
 *
 * Run: `npm run bench -- ranges` (or `npx tsx bench/ranges.ts` after `npm run build`);
 * BENCH_RANGES_MB sets the size (default 1024).
 */
import { mkdir, mkdtemp, open, rm } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { SESSION_COOKIE } from '../src/auth/sessions.js';
import { S3FileStore } from '../src/files/s3-file-store.js';
import { S3RVER_CREDENTIALS, startS3Server } from '../test/support/s3-server.js';
import { ask, forkServer } from './server-process.js';
import { participantSession } from './sessions.js';
import { median } from './stats.js';

type Figures = Record<string, number>;

const MiB = 1024 * 1024;
const USER = 'user0001';
const KEY = `${USER}/output/job1/big.mp4`;
const VIEW = `/${USER}/api/view?filename=big.mp4&subfolder=job1&type=output`;

interface Timing {
  status: number;
  firstByteMs: number;
  doneMs: number;
  bytes: number;
}

/** One GET; reads at most `limit` body bytes, then drops the connection (a player's seek does). */
function timedGet(url: string, headers: Record<string, string>, limit = Infinity): Promise<Timing> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    let firstByteMs = -1;
    let bytes = 0;
    const req = http.get(url, { headers, agent: false }, (res) => {
      const finish = () =>
        resolve({ status: res.statusCode ?? 0, firstByteMs, doneMs: performance.now() - t0, bytes });
      res.on('data', (c: Buffer) => {
        if (firstByteMs < 0) firstByteMs = performance.now() - t0;
        bytes += c.length;
        if (bytes >= limit) {
          res.destroy();
          finish();
        }
      });
      res.on('end', finish);
      res.on('error', () => undefined);
    });
    req.on('error', (err) => (bytes >= limit ? undefined : reject(err)));
  });
}

async function measure(
  name: string,
  env: Record<string, string>,
  dir: string,
  size: number,
): Promise<Figures> {
  const token = await participantSession(dir, USER, { maxPendingPerUser: 10 });
  const cookie = `${SESSION_COOKIE}=${token}`;
  const child = forkServer(dir, env);
  let rssMax = 0;
  let sampler: NodeJS.Timeout | undefined;
  try {
    const { url } = (await ask(child, 'ready')) as { url: string };
    const rss = async () => ((await ask(child, 'rss')) as { rss: number }).rss;
    const headers = (range?: string) => ({ cookie, ...(range ? { range } : {}) });
    // Warm up (first request loads modules, opens the S3 client), then the baseline.
    for (let i = 0; i < 3; i++) await timedGet(`${url}${VIEW}`, headers('bytes=0-1023'));
    const rssBefore = await rss();
    rssMax = rssBefore;
    sampler = setInterval(() => {
      void rss().then(
        (r) => (rssMax = Math.max(rssMax, r)),
        () => undefined,
      );
    }, 100);

    const runs = 15;
    const first: number[] = [];
    const tail: number[] = [];
    const seek: number[] = [];
    for (let i = 0; i < runs; i++) {
      const a = await timedGet(`${url}${VIEW}`, headers('bytes=0-'), MiB);
      if (a.status !== 206) throw new Error(`${name}: bytes=0- answered ${a.status}`);
      first.push(a.firstByteMs);
      const start = size - MiB + i * 1000;
      const b = await timedGet(`${url}${VIEW}`, headers(`bytes=${start}-${start + 65_535}`));
      if (b.status !== 206 || b.bytes !== Math.min(65_536, size - start))
        throw new Error(`${name}: tail range answered ${b.status} with ${b.bytes} bytes`);
      tail.push(b.firstByteMs);
      const mid = Math.floor(size / 2) + i * 4096;
      const c = await timedGet(`${url}${VIEW}`, headers(`bytes=${mid}-`), MiB);
      if (c.status !== 206) throw new Error(`${name}: seek answered ${c.status}`);
      seek.push(c.doneMs);
    }
    const rssMaxRanges = rssMax;
    const full = await timedGet(`${url}${VIEW}`, headers());
    if (full.status !== 200 || full.bytes !== size)
      throw new Error(`${name}: whole file ${full.status}, ${full.bytes} bytes`);
    clearInterval(sampler);
    sampler = undefined;
    await new Promise((r) => setTimeout(r, 500));
    const rssAfter = await rss();
    const r1 = (n: number) => Math.round(n * 10) / 10;
    return {
      [`${name}.file_mb`]: Math.round(size / MiB),
      [`${name}.first_byte_ms`]: r1(median(first)),
      [`${name}.tail_first_byte_ms`]: r1(median(tail)),
      [`${name}.seek_ms`]: r1(median(seek)),
      [`${name}.full_mb_per_s`]: r1(size / MiB / (full.doneMs / 1000)),
      [`${name}.rss_before_mb`]: r1(rssBefore / MiB),
      [`${name}.rss_max_ranges_mb`]: r1(rssMaxRanges / MiB),
      [`${name}.rss_max_full_mb`]: r1(Math.max(rssMax, rssAfter) / MiB),
      [`${name}.rss_after_mb`]: r1(rssAfter / MiB),
    };
  } finally {
    if (sampler) clearInterval(sampler);
    if (child.exitCode === null) {
      await ask(child, 'stop').catch(() => undefined);
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  }
}

/** `size` zero bytes, lazily, for the S3 upload. */
function zeros(size: number): Readable {
  let left = size;
  const chunk = Buffer.alloc(MiB);
  return new Readable({
    read() {
      if (left <= 0) return void this.push(null);
      const n = Math.min(left, MiB);
      left -= n;
      this.push(n === MiB ? chunk : chunk.subarray(0, n));
    },
  });
}

export async function benchRanges(): Promise<Figures> {
  const size = Number(process.env.BENCH_RANGES_MB ?? 1024) * MiB;
  const out: Figures = {};
  const localDir = await mkdtemp(join(tmpdir(), 'cm-bench-ranges-'));
  try {
    // A sparse file: 1 GiB on disk costs nothing, and reading it goes through the same code.
    const path = join(localDir, 'files', KEY);
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    const fh = await open(path, 'w', 0o600);
    await fh.truncate(size);
    await fh.close();
    Object.assign(out, await measure('local', { FILES: 'local' }, localDir, size));
  } finally {
    await rm(localDir, { recursive: true, force: true });
  }
  if (process.env.BENCH_RANGES_S3 === '0') return out;

  const s3Dir = await mkdtemp(join(tmpdir(), 'cm-bench-ranges-s3-'));
  const s3 = await startS3Server({ buckets: ['files'] });
  try {
    const store = new S3FileStore({
      bucket: 'files',
      prefix: 'bench/',
      endpoint: s3.endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: S3RVER_CREDENTIALS,
      partSize: 16 * MiB,
    });
    await store.write(KEY, zeros(size));
    store.close();
    Object.assign(
      out,
      await measure('s3', { ...s3.env, FILES: 's3', S3_BUCKET: 'files', S3_PREFIX: 'bench/' }, s3Dir, size),
    );
  } finally {
    await s3.stop();
    await rm(s3Dir, { recursive: true, force: true });
  }
  return out;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  console.log(JSON.stringify(await benchRanges(), null, 2));
}
