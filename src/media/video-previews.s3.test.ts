/**
 * Posters and durations with the S3 file store (a real s3rver): ffprobe and ffmpeg read the video
 * through a short-lived presigned URL, seeking with HTTP ranges, instead of a local file.
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setProcessEnv } from '../../test/support/process-env.js';
import { startS3Server, type S3ServerHandle } from '../../test/support/s3-server.js';
import { S3FileStore } from '../files/s3-file-store.js';
import { VideoPreviews } from './video-previews.js';
import { HAS_FFMPEG, SEEK_CLIP as CLIP } from '../../test/support/video.js';

describe.skipIf(!HAS_FFMPEG)('video previews from S3', () => {
  let s3: S3ServerHandle;
  let files: S3FileStore;
  let dir: string;
  let restoreEnv: (() => void) | undefined;

  beforeAll(async () => {
    s3 = await startS3Server({ buckets: ['files'] });
    restoreEnv = setProcessEnv(s3.env);
    files = new S3FileStore({
      bucket: 'files',
      prefix: `previews-${randomUUID()}/`,
      endpoint: s3.endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
    });
    dir = mkdtempSync(join(tmpdir(), 'cm-previews-s3-'));
  }, 60_000);

  afterAll(async () => {
    files?.close?.();
    restoreEnv?.();
    await s3?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('probes and makes the poster through a presigned URL', async () => {
    await files.write('user001/output/job1/clip.mp4', CLIP);
    const s = (await files.stat('user001/output/job1/clip.mp4'))!;
    const previews = new VideoPreviews(files, { ffprobe: 'ffprobe', ffmpeg: 'ffmpeg', cacheDir: dir });
    expect(await previews.info(s)).toEqual({ durationSec: expect.closeTo(4, 1), width: 160, height: 120 });
    const jpg = await previews.poster(s);
    expect(jpg).not.toBeNull();
    expect(readFileSync(jpg!).subarray(0, 3).toString('hex')).toBe('ffd8ff');
  }, 60_000);
});
