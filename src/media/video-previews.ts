import { execFile } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { constants } from 'node:fs';
import { access, mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { delimiter, join, resolve } from 'node:path';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { FileStat, FileStore } from '../files/file-store.js';

/**
 * Poster frames and durations of videos, for the gallery. Made with Debian's ffprobe/ffmpeg on the
 * control plane when they can be run, never required: without them every answer is `null` and the
 * gallery falls back to what the browser shows by itself.
 *
 * Each video is probed and its poster made once, then cached on disk under a name derived from
 * its key, size and modification time (a replaced file gets a new entry). The tools run as child
 * processes (never on the event loop), at most {@link VideoPreviewsOptions.concurrency} at a time,
 * each killed after {@link VideoPreviewsOptions.timeoutMs}; concurrent asks for the same video
 * share one run. A video the tools cannot read is remembered as such and not retried.
 */

export interface VideoInfo {
  /** Seconds, or null when the container does not say. */
  durationSec: number | null;
  width: number | null;
  height: number | null;
}

export interface VideoPreviewsOptions {
  /** ffprobe: a path or a name on PATH; empty disables durations. */
  ffprobe: string;
  /** ffmpeg: a path or a name on PATH; empty disables poster frames. */
  ffmpeg: string;
  /** Where probe results and posters are kept (created when first needed). */
  cacheDir: string;
  /** Tool runs at once (the control plane's cores serve requests too). Default 2. */
  concurrency?: number;
  /** A run taking longer is killed and counts as a failure. Default 30 s. */
  timeoutMs?: number;
  logger?: Pick<Logger, 'warn'>;
}

/** The demuxers of the video files the gallery shows (mp4/mov/m4v, mkv/webm, avi): nothing else. */
const VIDEO_DEMUXERS = 'mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi';

/** Poster width in pixels at most (a gallery card is about 220 px wide; 2× for high-DPI screens). */
const POSTER_WIDTH = 480;

const probeSchema = z.object({
  format: z.object({ duration: z.string().optional() }).partial().optional(),
  streams: z
    .array(
      z.object({
        codec_type: z.string().optional(),
        width: z.number().optional(),
        height: z.number().optional(),
        duration: z.string().optional(),
      }),
    )
    .optional(),
});

const cachedInfo = z.union([
  z.object({
    ok: z.literal(true),
    durationSec: z.number().nullable(),
    width: z.number().nullable(),
    height: z.number().nullable(),
  }),
  z.object({ ok: z.literal(false) }),
]);

/** Why a tool did not give an answer: it cannot be run at all, or it failed on this file. */
class Unavailable extends Error {}

function seconds(s: string | undefined): number | null {
  const n = s === undefined ? NaN : Number(s);
  return Number.isFinite(n) && n >= 0 ? n : null;
}

export class VideoPreviews {
  private readonly concurrency: number;
  private readonly timeoutMs: number;
  private running = 0;
  private readonly waiting: (() => void)[] = [];
  private readonly inflight = new Map<string, Promise<unknown>>();
  /** Tools found missing (ENOENT/EACCES): not tried again until restart; logged once. */
  private readonly missing = new Set<string>();

  constructor(
    private readonly files: FileStore,
    private readonly opts: VideoPreviewsOptions,
  ) {
    this.concurrency = Math.max(1, opts.concurrency ?? 2);
    this.timeoutMs = opts.timeoutMs ?? 30_000;
  }

  /**
   * Whether poster frames can be made: ffmpeg is configured, can be found (once, on first ask) and
   * was not found missing since. The gallery asks before it renders a poster URL.
   */
  async postersAvailable(): Promise<boolean> {
    return this.available(this.opts.ffmpeg);
  }

  /** Whether durations can be probed (ffprobe), as {@link postersAvailable}. */
  async durationsAvailable(): Promise<boolean> {
    return this.available(this.opts.ffprobe);
  }

  private readonly found = new Map<string, Promise<boolean>>();

  private async available(tool: string): Promise<boolean> {
    if (tool === '' || this.missing.has(tool)) return false;
    let p = this.found.get(tool);
    if (!p) {
      p = findExecutable(tool).then((ok) => {
        if (!ok) this.markMissing(tool, 'not found');
        return ok;
      });
      this.found.set(tool, p);
    }
    return p;
  }

  private markMissing(tool: string, why: string): void {
    if (!this.missing.has(tool))
      this.opts.logger?.warn(
        { tool },
        `${tool} cannot be run (${why}): the gallery shows videos without poster frames or durations. Install Debian's ffmpeg package or set FFMPEG_PATH / FFPROBE_PATH.`,
      );
    this.missing.add(tool);
  }

  private entry(file: FileStat): string {
    const h = createHash('sha256').update(`${file.key}\0${file.size}\0${file.mtimeMs}`).digest('hex');
    return join(this.opts.cacheDir, h.slice(0, 2), h);
  }

  /** Duration and size of the video, probed once. Null without ffprobe or when it cannot read it. */
  async info(file: FileStat): Promise<VideoInfo | null> {
    if (!(await this.durationsAvailable())) return null;
    const base = this.entry(file);
    const cached = await readJson(`${base}.json`);
    if (cached)
      return cached.ok
        ? { durationSec: cached.durationSec, width: cached.width, height: cached.height }
        : null;
    return this.once(`${base}.json`, async () => {
      const source = await this.sourceOf(file.key);
      if (!source) return null;
      let result: VideoInfo | null = null;
      try {
        const out = await this.run(this.opts.ffprobe, [
          '-v',
          'error',
          '-show_entries',
          'format=duration:stream=codec_type,width,height,duration',
          '-of',
          'json',
          ...source,
        ]);
        const parsed = probeSchema.safeParse(JSON.parse(out));
        if (parsed.success) {
          const video = parsed.data.streams?.find((s) => s.codec_type === 'video');
          if (video)
            result = {
              durationSec: seconds(parsed.data.format?.duration) ?? seconds(video.duration),
              width: video.width ?? null,
              height: video.height ?? null,
            };
        }
      } catch (err) {
        if (err instanceof Unavailable) return null; // not this file's fault: do not remember it
        result = null;
      }
      // An unwritable cache costs a probe per page load, not the answer.
      await writeAtomically(
        `${base}.json`,
        JSON.stringify(result ? { ok: true, ...result } : { ok: false }),
      ).catch(() => undefined);
      return result;
    });
  }

  /**
   * The path of a JPEG poster frame of the video (a frame a little into it: first frames are often
   * black), made once. Null without ffmpeg or when it cannot decode the file.
   */
  async poster(file: FileStat): Promise<string | null> {
    if (!(await this.postersAvailable())) return null;
    const base = this.entry(file);
    const jpg = `${base}.jpg`;
    if (await exists(jpg)) return jpg;
    if (await exists(`${base}.nojpg`)) return null;
    return this.once(jpg, async () => {
      const source = await this.sourceOf(file.key);
      if (!source) return null;
      const at = Math.min(1, ((await this.info(file))?.durationSec ?? 0) / 10);
      const tmp = `${base}.${randomUUID()}.partial.jpg`;
      const frame = (seek: number) =>
        this.run(this.opts.ffmpeg, [
          '-v',
          'error',
          '-nostdin',
          '-y',
          '-ss',
          seek.toFixed(3),
          ...source,
          '-frames:v',
          '1',
          '-vf',
          `scale='min(${POSTER_WIDTH},iw)':-2`,
          '-q:v',
          '5',
          '-f',
          'image2',
          '-update',
          '1',
          '-c:v',
          'mjpeg',
          tmp,
        ]);
      try {
        await mkdir(join(base, '..'), { recursive: true, mode: 0o700 });
        await frame(at);
        // Seeking past the last frame writes nothing: try the very first frame.
        if (!(await exists(tmp))) await frame(0);
        if (!(await exists(tmp))) throw new Error('no frame');
        await rename(tmp, jpg);
        return jpg;
      } catch (err) {
        await rm(tmp, { force: true }).catch(() => undefined);
        if (err instanceof Unavailable) return null;
        await writeAtomically(`${base}.nojpg`, '').catch(() => undefined);
        return null;
      }
    });
  }

  /**
   * What ffmpeg opens (the local file itself, or a short-lived URL of the object in the bucket), as
   * the input options and the input. A participant can put any bytes in their outputs (an upload
   * with `type=output`): a "video" that is really an HLS or concat playlist would make ffmpeg read
   * other files or URLs. Only the protocol the source needs and only video container demuxers are
   * allowed, so such a file is simply not a video.
   */
  private async sourceOf(key: string): Promise<string[] | null> {
    let protocols: string;
    let url: string;
    if (this.files.localPath) {
      // `file:` and an absolute path: no name can be taken for an option or another protocol.
      url = `file:${resolve(this.files.localPath(key))}`;
      protocols = 'file';
    } else if (this.files.presignGet) {
      url = await this.files.presignGet(key, 15 * 60);
      protocols = 'http,https,tcp,tls';
    } else return null;
    return ['-protocol_whitelist', protocols, '-format_whitelist', VIDEO_DEMUXERS, '-i', url];
  }

  private once<T>(id: string, work: () => Promise<T>): Promise<T> {
    const had = this.inflight.get(id);
    if (had) return had as Promise<T>;
    const p = work().finally(() => this.inflight.delete(id));
    this.inflight.set(id, p);
    return p;
  }

  /** Runs a tool under the concurrency limit; its stdout, or an error. */
  private async run(tool: string, args: string[]): Promise<string> {
    if (this.missing.has(tool)) throw new Unavailable(tool);
    if (this.running >= this.concurrency) await new Promise<void>((r) => this.waiting.push(r));
    this.running++;
    try {
      return await new Promise<string>((resolve, reject) => {
        execFile(
          tool,
          args,
          { timeout: this.timeoutMs, killSignal: 'SIGKILL', maxBuffer: 1024 * 1024, windowsHide: true },
          (err, stdout) => {
            if (!err) return resolve(stdout);
            const code = (err as NodeJS.ErrnoException).code;
            if (code === 'ENOENT' || code === 'EACCES') {
              this.markMissing(tool, code);
              return reject(new Unavailable(tool));
            }
            reject(err);
          },
        );
      });
    } finally {
      this.running--;
      this.waiting.shift()?.();
    }
  }
}

/** An executable file at `tool` (a path) or in a folder of PATH (a bare name), as execFile finds it. */
async function findExecutable(tool: string): Promise<boolean> {
  const candidates = tool.includes('/')
    ? [tool]
    : (process.env.PATH ?? '')
        .split(delimiter)
        .filter(Boolean)
        .map((d) => join(d, tool));
  for (const c of candidates) {
    const ok = await access(c, constants.X_OK).then(
      () => true,
      () => false,
    );
    if (ok && (await exists(c))) return true;
  }
  return false;
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    (s) => s.isFile(),
    () => false,
  );
}

async function readJson(path: string): Promise<z.infer<typeof cachedInfo> | null> {
  try {
    const parsed = cachedInfo.safeParse(JSON.parse(await readFile(path, 'utf8')));
    return parsed.success ? parsed.data : null;
  } catch {
    return null;
  }
}

/** Write beside, then rename: a reader never sees half a cache entry. */
async function writeAtomically(path: string, data: string): Promise<void> {
  await mkdir(join(path, '..'), { recursive: true, mode: 0o700 });
  const tmp = `${path}.${randomUUID()}.partial`;
  await writeFile(tmp, data, { mode: 0o600 });
  await rename(tmp, path);
}
