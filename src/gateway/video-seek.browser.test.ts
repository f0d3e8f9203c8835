/**
 * In Debian's Chromium: a participant's mp4 output plays and seeks in a `<video>` loaded through
 * `/<user>/api/view`, and in the gallery, the way it does from a plain ComfyUI (which answers
 * ranges with 206). Without range support Chromium cannot seek: `currentTime = 1` reads back 0.
 * In the participant's ComfyUI page (the mini frontend fixture, served by comfy-multi) a video
 * output announced over the socket plays and seeks as the real frontend's node preview shows it; in
 * the gallery the clip shows its poster frame (with ffmpeg), plays in place and seeks. The same
 * against the real frontend and a real ComfyUI: test/e2e/video-parity.e2e.test.ts.
 */
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ALLOW_LOOPBACK_FROM_FULFILLED_PAGES,
  HAS_CHROMIUM,
  launchChromium,
} from '../../test/support/chromium.js';
import { fileURLToPath } from 'node:url';
import { videoPrompt } from '../../test/support/prompts.js';
import { basicAuth } from '../../test/support/serve.js';
import { userFileKey } from '../files/safe-path.js';
import type { JobOutput } from '../store/types.js';
import {
  fakeWorkerEvents,
  storeWorkerOutput,
  type Harness,
  PARTICIPANT_PASSWORD,
  startParticipantSite,
} from '../../test/support/gateway-kit.js';
import { HAS_FFMPEG, SEEK_CLIP as CLIP } from '../../test/support/video.js';

const MINI_FRONTEND = fileURLToPath(new URL('../../test/fixtures/mini-frontend', import.meta.url));

/** The model-free video workflow of the real-frontend comparison (test/e2e/video-parity.e2e.test.ts). */
const VIDEO_PROMPT = videoPrompt();

/**
 * What a worker agent does for that workflow on a real ComfyUI 0.3.64: SaveVideo's `executed`
 * carries the clip under `images` with `animated: [true]` (as recorded from the real one), the
 * file saved under `video/` and shown to the participant under ComfyUI's own name for it.
 */
async function runVideoJob(h: Harness): Promise<void> {
  const { queue } = h.services;
  const job = await queue.claim('fake-worker', []);
  if (!job) throw new Error('no job to claim');
  const saved = await storeWorkerOutput(h, job, {
    filename: 'ComfyUI_00001_.mp4',
    subfolder: 'video',
    body: CLIP,
  });
  const publish = fakeWorkerEvents(h, job);
  publish('execution_start', { prompt_id: job.id, timestamp: Date.now() });
  publish('executed', {
    node: '3',
    display_node: '3',
    output: {
      // What the bus carries are the names the participant sees (the worker's are mapped before).
      images: [{ filename: saved.filename, subfolder: saved.subfolder, type: 'output' }],
      animated: [true],
    },
    prompt_id: job.id,
  });
  publish('execution_success', { prompt_id: job.id, timestamp: Date.now() });
  const output: JobOutput = { nodeId: '3', ...saved, type: 'output', kind: 'images' };
  const r = await queue.complete(job.id, job.attempts, [output]);
  if (!r.ok) throw new Error(`complete failed: ${r.reason}`);
  publish('executing', { node: null, prompt_id: job.id });
}

const PASSWORD = PARTICIPANT_PASSWORD;

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

/**
 * Plays the first `<video>` of the page until it has run a little, pauses it, seeks it to 1 s and
 * checks it landed there in the 4 s clip.
 */
async function playThenSeek(page: Page): Promise<void> {
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
}

describe.skipIf(!HAS_CHROMIUM)('a participant’s video in Chromium', () => {
  let h: Harness;
  let base: string;
  let browser: Browser;

  beforeAll(async () => {
    ({ h, base } = await startParticipantSite({ FRONTEND_DIR: MINI_FRONTEND }));
    await h.services.files.write(userFileKey('user001', 'output', 'job1', 'clip.mp4'), CLIP);
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
      extraHTTPHeaders: { authorization: basicAuth('user001', PASSWORD) },
    });
    const page = await context.newPage();
    const statuses: number[] = [];
    page.on('response', (r) => {
      if (r.url().includes('.mp4')) statuses.push(r.status());
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

  it('plays and seeks a video output in the participant’s ComfyUI page, as its node preview does', async () => {
    // The frontend comfy-multi serves (the mini fixture here), signed in with the session
    // cookie; the page queues the workflow, hears `executed` on its socket and shows the clip the
    // way the real frontend's node preview does: a <video> at `api/view?filename&type&subfolder`.
    const login = await fetch(`${base}/user001/api/users`, {
      headers: { authorization: basicAuth('user001', PASSWORD) },
    });
    const session = /cm_session=([^;]+)/.exec(login.headers.get('set-cookie') ?? '')![1]!;
    const context = await browser.newContext();
    await context.addCookies([{ name: 'cm_session', value: session, url: base }]);
    const page = await context.newPage();
    const statuses: number[] = [];
    page.on('response', (r) => {
      if (r.url().includes('ComfyUI_00001_.mp4')) statuses.push(r.status());
    });
    await page.goto(`${base}/user001/`);
    // The page sets its title once its own start-up requests are done.
    await page.waitForFunction("document.title === 'mini frontend ready'", undefined, { timeout: 15_000 });
    await page.evaluate(`(async () => {
      window.executed = [];
      const ws = new WebSocket(new URL('ws?clientId=page1', location.href.replace(/^http/, 'ws')));
      ws.onmessage = (e) => {
        if (typeof e.data !== 'string') return;
        const m = JSON.parse(e.data);
        if (m.type === 'executed') window.executed.push(m.data.output);
      };
      await new Promise((r) => (ws.onopen = r));
      const res = await fetch('api/prompt', {
        method: 'POST',
        body: JSON.stringify({ prompt: ${JSON.stringify(VIDEO_PROMPT)}, client_id: 'page1' }),
      });
      if (res.status !== 200) throw new Error('prompt: ' + res.status + ' ' + (await res.text()));
    })()`);
    await runVideoJob(h);
    await expect.poll(() => page.evaluate('window.executed.length'), { timeout: 15_000 }).toBe(1);
    const output = (await page.evaluate('window.executed[0]')) as {
      images: { filename: string; subfolder: string; type: string }[];
      animated: boolean[];
    };
    expect(output.animated).toEqual([true]);
    await page.evaluate(`(() => {
      const f = window.executed[0].images[0];
      const v = document.createElement('video');
      v.controls = true;
      v.muted = true;
      v.src = 'api/view?filename=' + encodeURIComponent(f.filename) + '&type=' + f.type +
        '&subfolder=' + encodeURIComponent(f.subfolder) + '&rand=' + Math.random();
      document.body.appendChild(v);
    })()`);
    await playThenSeek(page);
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
    await playThenSeek(page);
    expect(statuses).toContain(206);
    await context.close();
  }, 60_000);
});
