/**
 * Backup and restore benchmark against the local S3-compatible server (s3rver, a child process):
 *
 * - `backup_mb_s` / `restore_mb_s`: throughput of a full backup of ~2 GB of mixed files (a few
 *   large videos, some medium files, many small images; 20 users, SQLite state) to an s3:// target,
 *   and of restoring it onto an empty DATA_DIR (every checksum verified);
 * - `backup_peak_rss_mb` / `restore_peak_rss_mb`: the peak resident memory of the process doing it;
 * - `noop_backup_s`: a second backup with nothing changed (incremental: nothing is read or sent);
 * - `single_<size>_backup_peak_rss_mb` / `single_<size>_restore_peak_rss_mb`: peak memory backing
 *   up and restoring one file of 100 MB and of 1 GB — equal within noise when streaming works.
 *
 * Each backup or restore runs in a child process (bench/backup-child.ts) so its peak RSS is its own.
 * Run alone: `npx tsx bench/backup.ts` (env BENCH_BACKUP_SCALE, default 1 = ~2 GB; 0.1 for a
 * quick run). Needs about 3× the data size of free disk in the temp folder.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { once } from 'node:events';
import { openSqliteStore } from '../src/store/sqlite/sqlite-store.js';
import { startS3Server, S3RVER_CREDENTIALS, type S3ServerHandle } from '../test/support/s3-server.js';

type Figures = Record<string, number>;

const MiB = 1024 * 1024;
const CHILD = fileURLToPath(new URL('./backup-child.ts', import.meta.url));

interface ChildResult {
  ms: number;
  bytes: number;
  baselineRssMb: number;
  peakRssMb: number;
}

/** Writes `size` bytes of file `n` (distinct content per file and chunk) without holding it in memory. */
async function writeFile(path: string, size: number, n: number, block: Buffer): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const out = createWriteStream(path);
  for (let off = 0, i = 0; off < size; off += MiB, i++) {
    const len = Math.min(MiB, size - off);
    const chunk = Buffer.from(block.subarray(0, len));
    chunk.writeUInt32LE(n, 0);
    if (len >= 8) chunk.writeUInt32LE(i, 4);
    if (!out.write(chunk)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
}

/** The data set: [relative key, size] pairs under DATA_DIR/files. */
function mixedFiles(scale: number): [string, number][] {
  const files: [string, number][] = [];
  const user = (i: number) => `user${String((i % 20) + 1).padStart(3, '0')}`;
  const big = [512, 256, 128, 64].map((mb) => Math.round(mb * scale * MiB));
  big.forEach((size, i) => files.push([`${user(i)}/output/job-v${i}/video ${i}.mp4`, size]));
  for (let i = 0; i < Math.round(40 * scale); i++)
    files.push([`${user(i)}/output/job-m${i}/upscaled_${i}.png`, 8 * MiB]);
  for (let i = 0; i < Math.round(2000 * scale); i++) {
    const area = i % 5 === 0 ? 'input' : 'output';
    files.push([
      `${user(i)}/${area}/batch ${Math.floor(i / 100)}/ComfyUI_${String(i).padStart(5, '0')}_.png`,
      384 * 1024,
    ]);
  }
  return files;
}

async function makeDeployment(dir: string, files: [string, number][]): Promise<number> {
  const block = randomBytes(MiB);
  let total = 0;
  for (const [i, [key, size]] of files.entries()) {
    await writeFile(join(dir, 'files', key), size, i, block);
    total += size;
  }
  const store = await openSqliteStore({
    path: join(dir, 'comfy-multi.db'),
    defaults: {
      mode: 'round_robin',
      paused: false,
      limits: { maxPendingPerUser: 1000, maxRunningPerUser: 1 },
      userLimits: {},
    },
  });
  for (let i = 0; i < 500; i++) {
    await store.enqueue(
      {
        user: `user${String((i % 20) + 1).padStart(3, '0')}`,
        prompt: { '3': { class_type: 'KSampler', inputs: { seed: i } } },
      },
      Date.now(),
    );
  }
  await store.close();
  return total;
}

function runChild(
  mode: 'backup' | 'restore',
  spec: string,
  env: Record<string, string>,
): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', CHILD, mode, spec],
      { env: { ...process.env, ...env }, maxBuffer: 16 * MiB, timeout: 3_600_000 },
      (err, stdout, stderr) => {
        if (err) {
          reject(new Error(`${mode} failed: ${err.message}\n${stderr}`));
          return;
        }
        const line = stdout.trim().split('\n').pop() ?? '';
        resolve(JSON.parse(line) as ChildResult);
      },
    );
  });
}

const round = (n: number, d = 1) => Math.round(n * 10 ** d) / 10 ** d;

export async function benchBackup(): Promise<Figures> {
  const scale = Number(process.env.BENCH_BACKUP_SCALE ?? '1');
  const work = await mkdtemp(join(tmpdir(), 'cm-bench-backup-'));
  let s3: S3ServerHandle | undefined;
  try {
    s3 = await startS3Server({ buckets: ['bench'] });
    const env = (dataDir: string): Record<string, string> => ({
      LOG_LEVEL: 'silent',
      DATA_DIR: dataDir,
      BACKUP_S3_ENDPOINT: s3!.endpoint,
      BACKUP_S3_REGION: 'us-east-1',
      BACKUP_S3_FORCE_PATH_STYLE: 'true',
      BACKUP_S3_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId,
      BACKUP_S3_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey,
      TMPDIR: work,
    });
    const figures: Figures = {};

    // ~2 GB of mixed files.
    const source = join(work, 'source');
    const files = mixedFiles(scale);
    const total = await makeDeployment(source, files);
    figures.data_mb = round(total / MiB, 0);
    figures.data_files = files.length;
    const b = await runChild('backup', 's3://bench/mixed/', env(source));
    figures.backup_mb_s = round(b.bytes / MiB / (b.ms / 1000));
    figures.backup_peak_rss_mb = round(b.peakRssMb, 0);
    figures.backup_baseline_rss_mb = round(b.baselineRssMb, 0);
    const noop = await runChild('backup', 's3://bench/mixed/', env(source));
    figures.noop_backup_s = round(noop.ms / 1000, 2);
    const r = await runChild('restore', 's3://bench/mixed/', env(join(work, 'restored')));
    figures.restore_mb_s = round(r.bytes / MiB / (r.ms / 1000));
    figures.restore_peak_rss_mb = round(r.peakRssMb, 0);
    await rm(join(work, 'restored'), { recursive: true, force: true });
    await rm(source, { recursive: true, force: true });

    // Memory as one file grows tenfold.
    for (const [label, size] of [
      ['100mb', 100 * MiB],
      ['1gb', 1024 * MiB],
    ] as const) {
      const dir = join(work, `single-${label}`);
      await makeDeployment(dir, [['user001/output/job/one.mp4', Math.round(size * Math.min(1, scale * 10))]]);
      const sb = await runChild('backup', `s3://bench/single-${label}/`, env(dir));
      figures[`single_${label}_backup_peak_rss_mb`] = round(sb.peakRssMb, 0);
      figures[`single_${label}_backup_mb_s`] = round(sb.bytes / MiB / (sb.ms / 1000));
      const sr = await runChild('restore', `s3://bench/single-${label}/`, env(join(dir, 'restored')));
      figures[`single_${label}_restore_peak_rss_mb`] = round(sr.peakRssMb, 0);
      await rm(dir, { recursive: true, force: true });
    }
    return figures;
  } finally {
    await s3?.stop();
    await rm(work, { recursive: true, force: true });
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  console.log(JSON.stringify(await benchBackup(), null, 2));
}
