/**
 * Video work on the compiled control plane (dist/, in its own process, see gateway-server.mjs):
 *
 * - `upload_mb_per_s`, `upload_rss_before_mb` / `upload_rss_max_mb` / `upload_rss_after_mb`,
 *   `upload_loop_p99_ms`: one footage-sized clip (BENCH_VIDEO_MB, default 1000 MB, under the
 *   default UPLOAD_LIMIT of 1 GB) posted to `/<user>/api/upload/image` the way the ComfyUI
 *   frontend's LoadVideo upload sends it (one multipart form, declared length), over loopback;
 *   the server's resident memory sampled every 100 ms (flat: the clip never sits in memory) and
 *   its event-loop delay while the clip streams to the file store;
 * - `gallery_first_ms` / `gallery_cached_ms`: the gallery page of a participant with
 *   BENCH_VIDEO_CLIPS (default 40) videos, first load (ffprobe runs, at most 2 at a time, within
 *   the page's 2 s budget) and once probed; `posters_first_ms` / `posters_cached_ms`: every poster
 *   frame fetched (ffmpeg makes each once), then again from the cache; `posters_loop_p99_ms`: the
 *   event-loop delay meanwhile (the tools run as child processes, never on the loop).
 *
 * Run: `npm run bench -- video` (or `npx tsx bench/video.ts` after `npm run build`). The poster
 * figures need ffmpeg/ffprobe on PATH (Debian's ffmpeg package); without them they are left out.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SESSION_COOKIE } from '../src/auth/sessions.js';
import { HAS_FFMPEG, SEEK_CLIP as CLIP } from '../test/support/video.js';
import { ask, forkServer } from './server-process.js';
import { participantSession } from './sessions.js';

type Figures = Record<string, number>;

const MiB = 1024 * 1024;
const USER = 'user0001';
const r1 = (n: number) => Math.round(n * 10) / 10;

/** POSTs a multipart form with a `size`-byte file, generated as it is sent; the status and time. */
function upload(url: string, cookie: string, size: number): Promise<{ status: number; ms: number }> {
  const boundary = 'BenchVideoBoundary';
  const head = Buffer.from(
    `--${boundary}\r\nContent-Disposition: form-data; name="type"\r\n\r\ninput\r\n` +
      `--${boundary}\r\nContent-Disposition: form-data; name="image"; filename="footage.mp4"\r\n` +
      'Content-Type: video/mp4\r\n\r\n',
  );
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const req = http.request(
      `${url}/${USER}/api/upload/image`,
      {
        method: 'POST',
        agent: false,
        headers: {
          cookie,
          'content-type': `multipart/form-data; boundary=${boundary}`,
          'content-length': String(head.length + size + tail.length),
        },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, ms: performance.now() - t0 }));
      },
    );
    req.on('error', reject);
    const chunk = Buffer.alloc(MiB, 0x42);
    let left = size;
    const pump = () => {
      while (left > 0) {
        const n = Math.min(left, MiB);
        left -= n;
        if (!req.write(n === MiB ? chunk : chunk.subarray(0, n))) return void req.once('drain', pump);
      }
      req.end(tail);
    };
    req.write(head);
    pump();
  });
}

async function get(url: string, cookie: string): Promise<{ status: number; body: string }> {
  const res = await fetch(url, { headers: { cookie } });
  return { status: res.status, body: await res.text() };
}

export async function benchVideo(): Promise<Figures> {
  const size = Number(process.env.BENCH_VIDEO_MB ?? 1000) * MiB;
  const clips = Number(process.env.BENCH_VIDEO_CLIPS ?? 40);
  const dir = await mkdtemp(join(tmpdir(), 'cm-bench-video-'));
  const out: Figures = {};
  try {
    const token = await participantSession(dir, USER, { maxPendingPerUser: 10 });
    const cookie = `${SESSION_COOKIE}=${token}`;
    // The clips as a worker would have uploaded them, one job folder each.
    for (let i = 0; i < clips; i++) {
      const folder = join(dir, 'files', USER, 'output', `job${i}`, 'video');
      await mkdir(folder, { recursive: true, mode: 0o700 });
      await writeFile(join(folder, `ComfyUI_00001_.mp4`), CLIP, { mode: 0o600 });
    }
    const child = forkServer(dir, { FILES: 'local' });
    let sampler: NodeJS.Timeout | undefined;
    try {
      const { url } = (await ask(child, 'ready')) as { url: string };
      const stats = async () => (await ask(child, 'rss')) as { rss: number; loopP99Ms: number };

      // One clip, footage-sized.
      await upload(url as string, cookie, MiB); // warm-up
      const before = (await stats()).rss;
      let max = before;
      sampler = setInterval(() => {
        void stats().then(
          (s) => (max = Math.max(max, s.rss)),
          () => undefined,
        );
      }, 100);
      await ask(child, 'reset');
      const up = await upload(url as string, cookie, size);
      if (up.status !== 200) throw new Error(`upload answered ${up.status}`);
      const loop = (await stats()).loopP99Ms;
      clearInterval(sampler);
      sampler = undefined;
      await new Promise((r) => setTimeout(r, 500));
      const after = (await stats()).rss;
      Object.assign(out, {
        upload_mb: Math.round(size / MiB),
        upload_mb_per_s: r1(size / MiB / (up.ms / 1000)),
        upload_rss_before_mb: r1(before / MiB),
        upload_rss_max_mb: r1(Math.max(max, after) / MiB),
        upload_rss_after_mb: r1(after / MiB),
        upload_loop_p99_ms: r1(loop),
      });

      if (HAS_FFMPEG) {
        const gallery = `${url}/${USER}/gallery`;
        let t0 = performance.now();
        const first = await get(gallery, cookie);
        out.gallery_first_ms = r1(performance.now() - t0);
        const posters = [...first.body.matchAll(/poster="([^"]+)"/g)].map((m) =>
          m[1]!.replace(/&amp;/g, '&'),
        );
        if (posters.length !== clips) throw new Error(`${posters.length} posters for ${clips} clips`);
        await ask(child, 'reset');
        t0 = performance.now();
        // As a browser does: 6 at a time.
        const fetchAll = async () => {
          const queue = [...posters];
          await Promise.all(
            Array.from({ length: 6 }, async () => {
              for (let p = queue.shift(); p; p = queue.shift()) {
                const r = await get(`${url}${p}`, cookie);
                if (r.status !== 200) throw new Error(`poster answered ${r.status}`);
              }
            }),
          );
        };
        await fetchAll();
        out.posters = clips;
        out.posters_first_ms = r1(performance.now() - t0);
        out.posters_loop_p99_ms = r1((await stats()).loopP99Ms);
        t0 = performance.now();
        await fetchAll();
        out.posters_cached_ms = r1(performance.now() - t0);
        t0 = performance.now();
        await get(gallery, cookie);
        out.gallery_cached_ms = r1(performance.now() - t0);
      }
    } finally {
      if (sampler) clearInterval(sampler);
      if (child.exitCode === null) {
        await ask(child, 'stop').catch(() => undefined);
        if (child.exitCode === null) child.kill('SIGKILL');
      }
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  return out;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  console.log(JSON.stringify(await benchVideo(), null, 2));
}
