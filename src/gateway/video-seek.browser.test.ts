/**
 * In Debian's Chromium: a participant's mp4 output plays and seeks in a `<video>` loaded through
 * `/<user>/api/view`, and in the gallery, the way it does from a plain ComfyUI (which answers
 * ranges with 206). Without range support Chromium cannot seek: `currentTime = 1` reads back 0.
 * In the gallery the clip shows its poster frame (with ffmpeg), plays in place and seeks.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ALLOW_LOOPBACK_FROM_FULFILLED_PAGES,
  HAS_CHROMIUM,
  launchChromium,
} from '../../test/support/chromium.js';
import { userFileKey } from '../files/safe-path.js';
import { listen, startHarness, type Harness } from './test-kit.js';

const PASSWORD = 'pw-user001-0123456789';
const HAS_FFMPEG = (() => {
  try {
    execFileSync('sh', ['-c', 'command -v ffmpeg && command -v ffprobe'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();
// 4 s, 160×120, keyframe every second, moov at the end; see test/fixtures/video/README.md.
const CLIP = readFileSync(new URL('../../test/fixtures/video/seek-4s.mp4', import.meta.url));

const PAGE = `<!doctype html><meta charset="utf-8"><title>video</title><body>
<video id="v" preload="metadata" muted src="api/view?filename=clip.mp4&amp;subfolder=job1&amp;type=output"></video>
</body>`;

/** Seeks the first `<video>` of the page to 1 s and returns where it landed (strings: no DOM types). */
async function seekToOne(
  page: Page,
): Promise<{ duration: number; currentTime: number; seekableEnd: number }> {
  await page.waitForFunction("document.querySelector('video').readyState >= 1", undefined, {
    timeout: 15_000,
  });
  return (await page.evaluate(`new Promise((resolve) => {
    const v = document.querySelector('video');
    const done = () => resolve({
      duration: v.duration,
      currentTime: v.currentTime,
      seekableEnd: v.seekable.length ? v.seekable.end(v.seekable.length - 1) : 0,
    });
    v.addEventListener('seeked', done, { once: true });
    v.currentTime = 1;
    // A player that cannot seek snaps back to 0 without firing 'seeked'; report what it has then.
    setTimeout(done, 5000);
  })`)) as { duration: number; currentTime: number; seekableEnd: number };
}

describe.skipIf(!HAS_CHROMIUM)('a participant’s video in Chromium', () => {
  let h: Harness;
  let base: string;
  let browser: Browser;

  beforeAll(async () => {
    h = await startHarness();
    await h.services.accounts.create('user001', 'participant', PASSWORD);
    await h.services.files.write(userFileKey('user001', 'output', 'job1', 'clip.mp4'), CLIP);
    base = await listen(h);
    browser = await launchChromium([
      '--autoplay-policy=no-user-gesture-required',
      // The page is fulfilled by the test, not loaded from 127.0.0.1 (see browser.test.ts).
      ALLOW_LOOPBACK_FROM_FULFILLED_PAGES,
    ]);
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await h?.close();
  });

  const newPage = async () => {
    const context = await browser.newContext({
      extraHTTPHeaders: { authorization: `Basic ${Buffer.from(`user001:${PASSWORD}`).toString('base64')}` },
    });
    const page = await context.newPage();
    const statuses: number[] = [];
    page.on('response', (r) => {
      if (r.url().includes('clip.mp4')) statuses.push(r.status());
    });
    return { context, page, statuses };
  };

  it('seeks a <video> loaded through /<user>/api/view', async () => {
    const { context, page, statuses } = await newPage();
    await page.route(`${base}/user001/video-test`, (route) =>
      route.fulfill({ status: 200, contentType: 'text/html', body: PAGE }),
    );
    await page.goto(`${base}/user001/video-test`);
    const r = await seekToOne(page);
    expect(r.duration).toBeCloseTo(4, 1);
    expect(r.seekableEnd).toBeCloseTo(4, 1);
    expect(r.currentTime).toBeCloseTo(1, 1);
    expect(statuses).toContain(206);
    await context.close();
  }, 60_000);

  it('plays the video in place in the gallery, then seeks it', async () => {
    const { context, page, statuses } = await newPage();
    const posters: { status: number; type: string | undefined }[] = [];
    page.on('response', (r) => {
      if (r.url().includes('/gallery/poster'))
        posters.push({ status: r.status(), type: r.headers()['content-type'] });
    });
    await page.goto(`${base}/user001/gallery`);
    // With a poster frame (ffmpeg on this machine) nothing of the clip loads until it is played.
    const preload = await page.evaluate("document.querySelector('video').preload");
    if (HAS_FFMPEG) {
      expect(preload).toBe('none');
      expect(await page.evaluate("document.querySelector('video').poster")).toContain('/gallery/poster?');
      await expect
        .poll(() => posters, { timeout: 15_000 })
        .toContainEqual({ status: 200, type: 'image/jpeg' });
    }
    await page.evaluate("document.querySelector('video').muted = true");
    const played = await page.evaluate(
      "document.querySelector('video').play().then(() => 'ok', (e) => String(e))",
    );
    expect(played).toBe('ok');
    // Polled from here: the gallery's CSP (no script) forbids waitForFunction's in-page eval.
    await expect
      .poll(() => page.evaluate("document.querySelector('video').currentTime"), { timeout: 15_000 })
      .toBeGreaterThan(0.2);
    await page.evaluate("document.querySelector('video').pause()");
    const r = await seekToOne(page);
    expect(r.duration).toBeCloseTo(4, 1);
    expect(r.currentTime).toBeCloseTo(1, 1);
    expect(statuses).toContain(206);
    await context.close();
  }, 60_000);
});
