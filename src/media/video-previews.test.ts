/**
 * Poster frames and durations with Debian's real ffprobe/ffmpeg (skipped where they are not
 * installed; CI installs them), run through small wrapper scripts that log every run, so "once",
 * "shared" and "at most N at a time" are counted, not assumed. And the fallback: a missing binary
 * gives null, never an error.
 */
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalFileStore } from '../files/local-file-store.js';
import { VideoPreviews } from './video-previews.js';
import { SEEK_CLIP as CLIP } from '../../test/support/video.js';

const which = (tool: string) => {
  try {
    return execFileSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).trim() || null;
  } catch {
    return null;
  }
};
const FFPROBE = which('ffprobe');
const FFMPEG = which('ffmpeg');

let dir: string;
let files: LocalFileStore;
let logFile: string;

/** A wrapper that logs `start`/`end` of each run of `real`, sleeping a little to make runs overlap. */
function wrapper(name: string, real: string): string {
  const path = join(dir, name);
  writeFileSync(
    path,
    `#!/bin/sh\necho "start $$" >> '${logFile}'\nsleep 0.2\n'${real}' "$@"\nrc=$?\necho "end $$" >> '${logFile}'\nexit $rc\n`,
  );
  chmodSync(path, 0o755);
  return path;
}

const runs = () => (existsSync(logFile) ? readFileSync(logFile, 'utf8').trim().split('\n') : []);
const starts = () => runs().filter((l) => l.startsWith('start')).length;
function maxOverlap(): number {
  let now = 0;
  let max = 0;
  for (const l of runs()) {
    now += l.startsWith('start') ? 1 : -1;
    max = Math.max(max, now);
  }
  return max;
}

const stat = async (key: string) => (await files.stat(key))!;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'cm-previews-'));
  files = new LocalFileStore(join(dir, 'files'));
  logFile = join(dir, 'runs.log');
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe.skipIf(!FFPROBE || !FFMPEG)('video previews with ffprobe/ffmpeg', () => {
  let previews: VideoPreviews;

  beforeAll(() => {
    previews = new VideoPreviews(files, {
      ffprobe: wrapper('ffprobe', FFPROBE!),
      ffmpeg: wrapper('ffmpeg', FFMPEG!),
      cacheDir: join(dir, 'cache'),
      concurrency: 2,
    });
  });

  it('probes the duration and size once; concurrent asks share the run', async () => {
    rmSync(logFile, { force: true });
    await files.write('u/output/a/clip.mp4', CLIP);
    const s = await stat('u/output/a/clip.mp4');
    const all = await Promise.all([1, 2, 3, 4, 5].map(() => previews.info(s)));
    for (const info of all)
      expect(info).toEqual({ durationSec: expect.closeTo(4, 1), width: 160, height: 120 });
    expect(starts()).toBe(1);
    expect(await previews.info(s)).toEqual(all[0]);
    expect(starts()).toBe(1); // from the cache
  }, 30_000);

  it('makes a JPEG poster once, no wider than the card needs', async () => {
    rmSync(logFile, { force: true });
    const s = await stat('u/output/a/clip.mp4');
    const [jpg, again] = await Promise.all([previews.poster(s), previews.poster(s)]);
    expect(jpg).toBe(again);
    const bytes = readFileSync(jpg!);
    expect(bytes.subarray(0, 3).toString('hex')).toBe('ffd8ff');
    const made = starts();
    expect(made).toBe(1); // ffmpeg once (the duration was cached by the test above)
    expect(await previews.poster(s)).toBe(jpg);
    expect(starts()).toBe(made);
    // Nothing half-written is left in the cache.
    const names = readdirSync(join(dir, 'cache'), { recursive: true }).map(String);
    expect(names.filter((n) => n.includes('partial'))).toEqual([]);
  }, 30_000);

  it('a replaced video gets a new poster; many videos run at most `concurrency` tools at a time', async () => {
    rmSync(logFile, { force: true });
    const keys = [1, 2, 3, 4, 5].map((i) => `u/output/b/clip${i}.mp4`);
    for (const k of keys) await files.write(k, CLIP);
    const stats = await Promise.all(keys.map(stat));
    const infos = await Promise.all(stats.map((s) => previews.info(s)));
    expect(infos.every((i) => i?.width === 160)).toBe(true);
    expect(starts()).toBe(5);
    expect(maxOverlap()).toBeLessThanOrEqual(2);
  }, 60_000);

  it('remembers a file the tools cannot read (null, not retried)', async () => {
    rmSync(logFile, { force: true });
    // A truncated upload: the first 3 kB of the clip (its moov box is at the end).
    await files.write('u/output/c/cut.mp4', CLIP.subarray(0, 3000));
    const s = await stat('u/output/c/cut.mp4');
    expect(await previews.info(s)).toBeNull();
    expect(await previews.poster(s)).toBeNull();
    const tried = starts();
    expect(await previews.info(s)).toBeNull();
    expect(await previews.poster(s)).toBeNull();
    expect(starts()).toBe(tried);
    expect(await previews.durationsAvailable()).toBe(true);
  }, 30_000);

  it('still answers with a cache it cannot write (durations), and never throws', async () => {
    writeFileSync(join(dir, 'not-a-folder'), '');
    const broken = new VideoPreviews(files, {
      ffprobe: FFPROBE!,
      ffmpeg: FFMPEG!,
      cacheDir: join(dir, 'not-a-folder', 'cache'),
    });
    const s = await stat('u/output/a/clip.mp4');
    expect((await broken.info(s))?.width).toBe(160);
    expect(await broken.poster(s)).toBeNull();
  }, 30_000);

  it('refuses a playlist posing as a video (it would read other files)', async () => {
    // An HLS playlist named .mp4 that points at a real clip elsewhere on the machine: ffmpeg
    // would happily probe and decode that clip through it.
    writeFileSync(join(dir, 'elsewhere.mp4'), CLIP);
    const playlist = `#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4.0,\nfile://${join(dir, 'elsewhere.mp4')}\n#EXT-X-ENDLIST\n`;
    await files.write('u/output/e/playlist.mp4', Buffer.from(playlist));
    const s = await stat('u/output/e/playlist.mp4');
    expect(await previews.info(s)).toBeNull();
    expect(await previews.poster(s)).toBeNull();
  }, 30_000);
});

describe('video previews without the tools', () => {
  it('answer null when the binaries are missing or turned off, and remember that', async () => {
    await files.write('u/output/d/clip.mp4', CLIP);
    const s = await stat('u/output/d/clip.mp4');
    const warnings: unknown[] = [];
    const missing = new VideoPreviews(files, {
      ffprobe: join(dir, 'no-such-ffprobe'),
      ffmpeg: join(dir, 'no-such-ffmpeg'),
      cacheDir: join(dir, 'cache-missing'),
      logger: { warn: (...a: unknown[]) => warnings.push(a) },
    });
    expect(await missing.durationsAvailable()).toBe(false);
    expect(await missing.postersAvailable()).toBe(false);
    expect(await missing.info(s)).toBeNull();
    expect(await missing.poster(s)).toBeNull();
    expect(await missing.info(s)).toBeNull();
    expect(warnings).toHaveLength(2); // once per tool
    // Nothing cached: installing ffmpeg later (and restarting) makes the posters.
    const cacheDir = join(dir, 'cache-missing');
    const cached = existsSync(cacheDir)
      ? readdirSync(cacheDir, { recursive: true, withFileTypes: true })
      : [];
    expect(cached.filter((e) => e.isFile())).toEqual([]);

    const off = new VideoPreviews(files, { ffprobe: '', ffmpeg: '', cacheDir: join(dir, 'cache-off') });
    expect(await off.postersAvailable()).toBe(false);
    expect(await off.durationsAvailable()).toBe(false);
    expect(await off.info(s)).toBeNull();
    expect(await off.poster(s)).toBeNull();
  });
});
