/**
 * One large output end to end, through real processes: a ComfyUI stand-in writes a video of
 * `bytes` bytes (its `videoBytes` knob), a worker agent (`comfy-multi worker`) streams it from
 * `/view` to the control plane (`comfy-multi serve`), which stores it in its file store (local or
 * a real s3rver), and a participant downloads it through `/<user>/api/view`, whole and by a range.
 *
 * The resident memory of the agent and the control plane is sampled every 100 ms from
 * /proc/<pid>/status (Linux) during each hop. Shared by the test (test/e2e/bigoutput.e2e.test.ts,
 * which asserts) and the benchmark (bench/bigoutput.ts, which prints figures).
 */
import { createHash } from 'node:crypto';
import {
  createReadStream,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
} from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { hashPassword } from '../../src/auth/passwords.js';
import { openSqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import { Processes, waitFor, type Proc } from './processes.js';
import { freePort } from './redis-server.js';
import { startS3Server, type S3ServerHandle } from './s3-server.js';

const MiB = 1024 * 1024;
const USER = 'bigout';
const PASSWORD = 'big-output-password-0123';
const TOKEN = 'big-output-worker-secret';
const ADMIN_PASSWORD = 'big-output-admin-password';

export interface BigOutputOptions {
  /** Size of the output file. */
  bytes: number;
  files: 'local' | 's3';
  /** Run the compiled CLI (`bin/comfy-multi.js`, needs `npm run build`) instead of src/ via tsx. */
  built?: boolean;
}

/** Resident memory of one process over a hop, in bytes. */
export interface RssSpan {
  before: number;
  peak: number;
  after: number;
}

export interface BigOutputResult {
  bytes: number;
  /** sha256 of the file ComfyUI wrote, of what the control plane reported storing, of the download. */
  sha256: { source: string; stored: string; downloaded: string };
  /** `executed` (the stand-in's end of execution) → the job reported complete with its output stored. */
  uploadMs: number;
  /** The whole file through `/<user>/api/view`. */
  downloadMs: number;
  downloadedBytes: number;
  /** The last MiB by `Range`: status, time, whether the bytes match the source's. */
  range: { status: number; ms: number; matches: boolean };
  rss: {
    agentUpload: RssSpan;
    serverUpload: RssSpan;
    serverDownload: RssSpan;
  };
  /** The stand-in's own `/view`, read straight by this process: the GPU machine's disk hop alone. */
  viewMs: number;
}

function rssOf(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

/** Samples the RSS of `pids` every 100 ms until `stop()`; answers the peaks. */
function sampleRss(pids: number[]): { stop(): number[] } {
  const peaks = pids.map(rssOf);
  const timer = setInterval(() => {
    pids.forEach((pid, i) => {
      try {
        peaks[i] = Math.max(peaks[i]!, rssOf(pid));
      } catch {
        // the process went away; the test notices elsewhere
      }
    });
  }, 100);
  return {
    stop() {
      clearInterval(timer);
      pids.forEach((pid, i) => (peaks[i] = Math.max(peaks[i]!, rssOf(pid))));
      return peaks;
    },
  };
}

interface Streamed {
  status: number;
  bytes: number;
  sha256: string;
  ms: number;
}

/** GET, hashing the body as it streams by (never kept). */
function hashedGet(url: string, headers: Record<string, string>): Promise<Streamed> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const req = http.get(url, { headers, agent: false }, (res) => {
      const hash = createHash('sha256');
      let bytes = 0;
      res.on('data', (c: Buffer) => {
        bytes += c.length;
        hash.update(c);
      });
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          bytes,
          sha256: hash.digest('hex'),
          ms: performance.now() - t0,
        }),
      );
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

async function sha256OfFile(path: string, start = 0): Promise<string> {
  const hash = createHash('sha256');
  for await (const c of createReadStream(path, { start })) hash.update(c as Buffer);
  return hash.digest('hex');
}

/** The one `.mp4` under `dir` (the stand-in's output folder). */
function findVideo(dir: string): string {
  const found = readdirSync(dir, { recursive: true, withFileTypes: true }).filter(
    (d) => d.isFile() && d.name.endsWith('.mp4'),
  );
  if (found.length !== 1) throw new Error(`expected one .mp4 under ${dir}, found ${found.length}`);
  return join(found[0]!.parentPath, found[0]!.name);
}

interface HistoryEntry {
  status?: { status_str: string; completed: boolean };
  outputs?: Record<string, { images?: { filename: string; subfolder: string; type: string }[] }>;
}

/** A model-free video graph: EmptyImage → CreateVideo → SaveVideo. */
function videoPrompt(color: number): Record<string, { class_type: string; inputs: Record<string, unknown> }> {
  return {
    '1': { class_type: 'EmptyImage', inputs: { width: 64, height: 64, batch_size: 2, color } },
    '2': { class_type: 'CreateVideo', inputs: { images: ['1', 0], fps: 8 } },
    '3': {
      class_type: 'SaveVideo',
      inputs: { video: ['2', 0], filename_prefix: 'big/clip', format: 'auto', codec: 'auto' },
    },
  };
}

/** Starts everything, moves one output of `bytes` end to end, measures, stops everything. */
export async function runBigOutput(opts: BigOutputOptions): Promise<BigOutputResult> {
  const dir = mkdtempSync(join(tmpdir(), 'cm-bigout-'));
  const procs = new Processes();
  let s3: S3ServerHandle | undefined;
  const cli = (name: string, args: string[], env: Record<string, string>): Proc =>
    opts.built
      ? procs.run(name, ['bin/comfy-multi.js', ...args], env, undefined, { tsx: false })
      : procs.run(name, ['src/cli/index.ts', ...args], env);
  try {
    const dataDir = join(dir, 'data');
    const standinDir = join(dir, 'standin');
    mkdirSync(dataDir, { recursive: true });
    mkdirSync(standinDir, { recursive: true });

    // The participant's account, in the store before the server opens it.
    const store = await openSqliteStore({
      path: join(dataDir, 'comfy-multi.db'),
      defaults: {
        mode: 'round_robin',
        paused: false,
        limits: { maxPendingPerUser: 10, maxRunningPerUser: 1 },
        userLimits: {},
      },
    });
    await store.putAccount({
      name: USER,
      role: 'participant',
      passwordHash: await hashPassword(PASSWORD),
      createdAt: Date.now(),
      passwordVersion: 1,
    });
    await store.close();

    const [port, comfyPort] = await Promise.all([freePort(), freePort()]);
    const serverUrl = `http://127.0.0.1:${port}`;
    const comfyUrl = `http://127.0.0.1:${comfyPort}`;
    procs.run(
      'standin',
      ['test/support/comfyui-standin/main.ts', '--port', String(comfyPort), '--dir', standinDir],
      {},
    );
    let filesEnv: Record<string, string> = { FILES: 'local' };
    if (opts.files === 's3') {
      s3 = await startS3Server({ buckets: ['files'] });
      filesEnv = { ...s3.env, FILES: 's3', S3_BUCKET: 'files', S3_PREFIX: 'bench/' };
    }
    const server = cli('serve', ['serve'], {
      ...filesEnv,
      DATA_DIR: dataDir,
      HOST: '127.0.0.1',
      PORT: String(port),
      LOG_LEVEL: 'warn',
      ADMIN_PASSWORD,
      WORKER_TOKENS: `w1:${TOKEN}`,
      OUTPUT_UPLOAD_LIMIT: String(opts.bytes + MiB),
    });
    await waitFor(async () => (await fetch(`${serverUrl}/health`)).ok, 60_000, 'the control plane');
    await waitFor(async () => (await fetch(`${comfyUrl}/system_stats`)).ok, 60_000, 'the stand-in');
    const agent = cli('worker', ['worker', '--server', serverUrl, '--comfyui', comfyUrl, '--name', 'gpu1'], {
      COMFY_MULTI_TOKEN: TOKEN,
      LOG_LEVEL: 'warn',
    });
    const admin = { authorization: `Basic ${Buffer.from(`admin:${ADMIN_PASSWORD}`).toString('base64')}` };
    await waitFor(
      async () => {
        const res = await fetch(`${serverUrl}/api/v1/workers`, { headers: admin });
        const body = (await res.json()) as { workers?: { status: string }[] } | { status: string }[];
        const list = Array.isArray(body) ? body : (body.workers ?? []);
        return list.some((w) => w.status === 'idle');
      },
      60_000,
      'the worker agent',
    );

    const auth = { authorization: `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString('base64')}` };
    const setVideoBytes = async (n: number) => {
      const res = await fetch(`${comfyUrl}/standin/faults`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ videoBytes: n }),
      });
      if (!res.ok) throw new Error(`stand-in refused videoBytes: ${res.status}`);
    };
    const runJob = async (color: number) => {
      const res = await fetch(`${serverUrl}/${USER}/api/prompt`, {
        method: 'POST',
        headers: { ...auth, 'content-type': 'application/json' },
        body: JSON.stringify({ prompt: videoPrompt(color), client_id: 'bigout' }),
      });
      if (!res.ok) throw new Error(`prompt refused: ${res.status} ${await res.text()}`);
      const { prompt_id: id } = (await res.json()) as { prompt_id: string };
      const entry = await waitFor(
        async () => {
          const h = (await (
            await fetch(`${serverUrl}/${USER}/api/history/${id}`, { headers: auth })
          ).json()) as Record<string, HistoryEntry>;
          const e = h[id];
          // (waitFor retries on a throw, so a failed job is returned and reported below.)
          return e?.status?.completed || e?.status?.status_str === 'error' ? e : null;
        },
        30 * 60_000,
        `job ${id}`,
      );
      if (!entry.status?.completed) throw new Error(`job ${id} failed: ${JSON.stringify(entry.status)}`);
      return { id, entry };
    };

    // Warm-up with a small video: modules loaded, connections open, before the baseline.
    await setVideoBytes(64 * 1024);
    await runJob(0x102030);
    rmSync(join(standinDir, 'output'), { recursive: true, force: true });
    await setVideoBytes(opts.bytes);
    await new Promise((r) => setTimeout(r, 500));

    // Hop 1: ComfyUI /view → agent → control plane → file store (one pipelined stream).
    const agentPid = agent.child.pid!;
    const serverPid = server.child.pid!;
    const upBefore = [rssOf(agentPid), rssOf(serverPid)];
    const upSampler = sampleRss([agentPid, serverPid]);
    const job = await runJob(0x405060);
    const [agentPeak, serverUpPeak] = upSampler.stop();
    await new Promise((r) => setTimeout(r, 500));
    const upAfter = [rssOf(agentPid), rssOf(serverPid)];

    const video = findVideo(join(standinDir, 'output'));
    // The upload starts at `executed`, which the stand-in sends right after its last write.
    const stored = await storedOutput(serverUrl, admin, job.id);
    const uploadMs = stored.recordedAt - statSync(video).mtimeMs;
    const out = Object.values(job.entry.outputs ?? {})
      .flatMap((o) => o.images ?? [])
      .find((i) => i.filename.endsWith('.mp4'));
    if (!out) throw new Error(`no video in the job's outputs: ${JSON.stringify(job.entry.outputs)}`);

    const sourceSha = await sha256OfFile(video);
    const tailStart = Math.max(0, opts.bytes - MiB);
    const sourceTailSha = await sha256OfFile(video, tailStart);

    // The GPU machine's own hop, for reference: the stand-in's /view read by this process.
    const q = new URLSearchParams({
      filename: basename(video),
      subfolder: relSubfolder(video, standinDir),
      type: 'output',
    });
    const view = await hashedGet(`${comfyUrl}/view?${q.toString()}`, {});
    if (view.status !== 200 || view.sha256 !== sourceSha)
      throw new Error(`the stand-in's /view answered ${view.status} with ${view.bytes} bytes`);

    // Hop 2: file store → control plane → browser, whole and by a range.
    const downBefore = rssOf(serverPid);
    const downSampler = sampleRss([serverPid]);
    const vq = new URLSearchParams({ filename: out.filename, subfolder: out.subfolder, type: out.type });
    const viewUrl = `${serverUrl}/${USER}/api/view?${vq.toString()}`;
    const whole = await hashedGet(viewUrl, auth);
    const ranged = await hashedGet(viewUrl, { ...auth, range: `bytes=${tailStart}-${opts.bytes - 1}` });
    const [serverDownPeak] = downSampler.stop();
    await new Promise((r) => setTimeout(r, 500));
    const downAfter = rssOf(serverPid);

    return {
      bytes: opts.bytes,
      sha256: {
        source: sourceSha,
        stored: stored.sha256,
        downloaded: whole.status === 200 ? whole.sha256 : `HTTP ${whole.status}`,
      },
      uploadMs,
      downloadMs: whole.ms,
      downloadedBytes: whole.bytes,
      range: { status: ranged.status, ms: ranged.ms, matches: ranged.sha256 === sourceTailSha },
      rss: {
        agentUpload: { before: upBefore[0]!, peak: agentPeak!, after: upAfter[0]! },
        serverUpload: { before: upBefore[1]!, peak: serverUpPeak!, after: upAfter[1]! },
        serverDownload: { before: downBefore, peak: serverDownPeak!, after: downAfter },
      },
      viewMs: view.ms,
    };
  } catch (err) {
    throw new Error(`${(err as Error).message}\n${procs.logs()}`, { cause: err });
  } finally {
    await procs.killAll();
    await s3?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The subfolder of `file` under `<standinDir>/output`, as /view wants it. */
function relSubfolder(file: string, standinDir: string): string {
  const base = join(standinDir, 'output') + '/';
  const rel = file.slice(base.length);
  return rel.slice(0, Math.max(0, rel.lastIndexOf('/')));
}

/**
 * What the control plane recorded for the job's stored video (admin jobs API), and when the record
 * appeared (looked for every 20 ms). `/history` shows the job completed from ComfyUI's success on,
 * while the video still uploads (`welcome.earlyOutputs`); the record follows the upload.
 */
async function storedOutput(
  serverUrl: string,
  admin: Record<string, string>,
  id: string,
): Promise<{ sha256: string; recordedAt: number }> {
  type Recorded = { status?: string; outputs?: { filename: string; sha256?: string }[] };
  const job = await waitFor(
    async () => {
      const res = await fetch(`${serverUrl}/api/v1/jobs/${id}`, { headers: admin });
      const j = (await res.json()) as Recorded;
      return j.status === 'running' ? null : j;
    },
    30 * 60_000,
    `the record of job ${id}`,
    20,
  );
  const recordedAt = Date.now();
  const v = (job.outputs ?? []).find((o) => o.filename.endsWith('.mp4'));
  return {
    sha256: v?.sha256 ?? `none in ${JSON.stringify(job).slice(0, 300)}`,
    recordedAt,
  };
}
