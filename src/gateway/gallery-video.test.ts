/**
 * The gallery with videos: poster frames and durations from Debian's ffmpeg/ffprobe (skipped where
 * they are not installed; CI installs them), a filter by kind, a zip of one kind, and the clean
 * fallback when the tools are missing (FFPROBE_PATH / FFMPEG_PATH pointing nowhere).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { userFileKey } from '../files/safe-path.js';
import { startHarness, tinyPng } from '../../test/support/gateway-kit.js';
import { HAS_FFMPEG, SEEK_CLIP as CLIP } from '../../test/support/video.js';

async function withOutputs(env: Record<string, string> = {}) {
  const h = await startHarness(env);
  const A = await h.addUser('user001');
  const B = await h.addUser('user002');
  const put = (user: string, path: string, body: Buffer) =>
    h.services.files.write(userFileKey(user, 'output', path), body);
  await put('user001', 'job1/ComfyUI_00001_.mp4', CLIP);
  await put('user001', 'job2/ComfyUI_00001_.png', tinyPng());
  await put('user002', 'job3/theirs.mp4', CLIP);
  const get = (url: string, auth = A) =>
    h.app.inject({ method: 'GET', url, headers: { authorization: auth } });
  return { h, get, B };
}

describe.skipIf(!HAS_FFMPEG)('the gallery’s videos with ffmpeg', () => {
  let t: Awaited<ReturnType<typeof withOutputs>>;
  beforeAll(async () => {
    t = await withOutputs();
  }, 60_000);
  afterAll(async () => t?.h.close());

  it('shows a poster frame and the duration, and plays in place without preloading', async () => {
    const page = await t.get('/user001/gallery');
    expect(page.statusCode).toBe(200);
    const video = /<video [^>]*>/.exec(page.body)![0];
    expect(video).toContain('preload="none"');
    expect(video).toContain('controls');
    expect(video).toMatch(
      /poster="\/user001\/gallery\/poster\?path=job1%2FComfyUI_00001_.mp4&amp;v=\d+-\d+"/,
    );
    expect(video).toContain(
      'src="/user001/view?filename=ComfyUI_00001_.mp4&amp;subfolder=job1&amp;type=output"',
    );
    expect(page.body).toContain('<span class="duration">0:04</span>');
    expect(page.body).not.toContain('theirs.mp4');

    const poster = await t.get('/user001/gallery/poster?path=job1%2FComfyUI_00001_.mp4');
    expect(poster.statusCode).toBe(200);
    expect(poster.headers['content-type']).toBe('image/jpeg');
    expect(poster.rawPayload.subarray(0, 3).toString('hex')).toBe('ffd8ff');
  }, 60_000);

  it('has posters only for the participant’s own videos', async () => {
    expect((await t.get('/user001/gallery/poster?path=job2%2FComfyUI_00001_.png')).statusCode).toBe(404);
    expect((await t.get('/user001/gallery/poster?path=job3%2Ftheirs.mp4')).statusCode).toBe(404);
    expect(
      (await t.get('/user001/gallery/poster?path=..%2Fuser002%2Foutput%2Fjob3%2Ftheirs.mp4')).statusCode,
    ).toBe(400);
    expect((await t.get('/user001/gallery/poster')).statusCode).toBe(400);
    // user002 sees their own.
    expect((await t.get('/user002/gallery/poster?path=job3%2Ftheirs.mp4', t.B)).statusCode).toBe(200);
  }, 60_000);
});

describe('the gallery’s filter by kind', () => {
  let t: Awaited<ReturnType<typeof withOutputs>>;
  beforeAll(async () => {
    t = await withOutputs();
  }, 60_000);
  afterAll(async () => t?.h.close());

  it('lists one kind, and zips just that kind', async () => {
    const all = await t.get('/user001/gallery');
    expect(all.body).toContain('href="/user001/gallery?kind=video">Videos (1)</a>');
    expect(all.body).toContain('href="/user001/gallery?kind=image">Images (1)</a>');
    const videos = await t.get('/user001/gallery?kind=video');
    expect(videos.statusCode).toBe(200);
    expect(videos.body).toContain('ComfyUI_00001_.mp4');
    expect(videos.body).not.toContain('ComfyUI_00001_.png');
    expect(videos.body).toContain('href="/user001/gallery/download.zip?kind=video"');
    const audio = await t.get('/user001/gallery?kind=audio');
    expect(audio.body).toContain('No audio here.');

    const zip = await t.get('/user001/gallery/download.zip?kind=video');
    expect(zip.statusCode).toBe(200);
    expect(zip.headers['content-disposition']).toContain('user001-video-outputs.zip');
    expect(zip.rawPayload.includes(CLIP)).toBe(true);
    expect(zip.rawPayload.includes(Buffer.from('ComfyUI_00001_.png'))).toBe(false);
  }, 60_000);

  it('refuses an unknown kind with 400', async () => {
    const r = await t.get('/user001/gallery?kind=executable');
    expect(r.statusCode).toBe(400);
    expect(r.json().error.code).toBe('VALIDATION_FAILED');
    expect((await t.get('/user001/gallery/download.zip?kind=nope')).statusCode).toBe(400);
  });
});

describe('the gallery without ffmpeg/ffprobe', () => {
  let t: Awaited<ReturnType<typeof withOutputs>>;
  beforeAll(async () => {
    t = await withOutputs({ FFPROBE_PATH: '/nonexistent/ffprobe', FFMPEG_PATH: '/nonexistent/ffmpeg' });
  }, 60_000);
  afterAll(async () => t?.h.close());

  it('still shows and plays the video, without a poster or a duration', async () => {
    // First load: the tools are found missing while it renders.
    for (let i = 0; i < 2; i++) {
      const page = await t.get('/user001/gallery');
      expect(page.statusCode).toBe(200);
      const video = /<video [^>]*>/.exec(page.body)![0];
      expect(video).toContain('preload="metadata"');
      expect(video).not.toContain('poster=');
      expect(page.body).not.toContain('class="duration"');
    }
    expect((await t.get('/user001/gallery/poster?path=job1%2FComfyUI_00001_.mp4')).statusCode).toBe(404);
    const view = await t.get('/user001/view?filename=ComfyUI_00001_.mp4&subfolder=job1&type=output');
    expect(view.statusCode).toBe(200);
    expect(view.headers['content-type']).toBe('video/mp4');
  }, 60_000);
});
