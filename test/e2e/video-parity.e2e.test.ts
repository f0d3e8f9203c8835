/**
 * A participant's video in the real ComfyUI frontend, side by side with a plain ComfyUI: the same
 * model-free workflow (EmptyImage batch → CreateVideo → SaveVideo) is queued from the frontend in
 * Chromium once against the plain ComfyUI at COMFYUI_URL and once against comfy-multi (a control
 * plane and a worker agent on that ComfyUI, the frontend mirrored from it), and what the
 * participant sees is compared: the node preview's `<video>` plays and seeks, the Assets panel
 * lists the clip, the queue panel shows the job, and after a reload it is still there.
 *
 * Only with COMFYUI_URL (a real ComfyUI serving its real frontend): the stand-in can neither run
 * video nodes nor serve the real frontend. Without it every test is skipped and says why.
 * (src/gateway/video-seek.browser.test.ts covers playing and seeking in stand-in mode.)
 *
 * Run: COMFYUI_URL=http://127.0.0.1:8188 npx vitest run test/e2e/video-parity.e2e.test.ts
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { HAS_CHROMIUM, launchChromium } from '../support/chromium.js';
import { Processes, waitFor } from '../support/processes.js';
import { videoPrompt } from '../support/prompts.js';
import { freePort } from '../support/redis-server.js';
import { addUser, basicAuth, startServe } from '../support/serve.js';

const REAL_COMFYUI = process.env.COMFYUI_URL?.replace(/\/+$/, '') || null;
const SKIP_REASON = !REAL_COMFYUI
  ? 'needs COMFYUI_URL (a real ComfyUI with its frontend; the stand-in cannot run video nodes)'
  : !HAS_CHROMIUM
    ? 'needs /usr/bin/chromium'
    : null;
const ADMIN_PASSWORD = 'e2e-admin-password';
const USER_PASSWORD = 'e2e-user001-password';
const WORKER_TOKEN = 'e2e-video-worker-token';

const procs = new Processes();
let dataDir: string;
let serverUrl: string;
let browser: Browser;
/** Why the comparison cannot run (no frontend mirrored from the worker), or null. */
let notMirrored: string | null = null;

interface Seen {
  /** The node preview's `<video>`: its duration, whether it played, where a seek to 1 s landed. */
  preview: { duration: number; played: boolean; seekedTo: number } | null;
  /** The Assets panel (Generated) shows the clip. */
  assets: boolean;
  /** The queue panel shows the finished job. */
  queue: boolean;
  /** After a reload: the Assets panel still shows it. */
  afterReload: boolean;
  /** After a reload: the node preview shows it again. */
  previewAfterReload: boolean;
  /** What the browser got for the clip from `/view` (200 or 206 per request). */
  viewStatuses: number[];
}

async function appReady(page: Page): Promise<void> {
  await page.waitForFunction('Boolean(window.app && window.app.graph)', undefined, { timeout: 90_000 });
  // First-visit dialogs (the templates browser for a new user) would cover the side bar; they
  // open a moment after the graph.
  await page.waitForTimeout(2_000);
  for (let i = 0; i < 3 && (await page.locator('.p-dialog-mask').count()); i++) {
    await page.keyboard.press('Escape');
    await page.waitForTimeout(500);
  }
}

/** Whether something naming `stem` (a card's text or a media URL) shows in `scope` within `ms`. */
async function shows(page: Page, scope: string, stem: string, ms: number): Promise<boolean> {
  try {
    // Strings, not functions: the project has no DOM types (see video-seek.browser.test.ts).
    await page.waitForFunction(
      `(() => {
        const root = document.querySelector(${JSON.stringify(scope)});
        if (!root) return false;
        if (root.innerText.includes(${JSON.stringify(stem)})) return true;
        return [...root.querySelectorAll('img,video')].some((m) => m.src.includes(${JSON.stringify(stem)}));
      })()`,
      undefined,
      { timeout: ms },
    );
    return true;
  } catch {
    return false;
  }
}

async function openAssets(page: Page): Promise<void> {
  const selected = page.locator('.assets-tab-button.side-bar-button-selected');
  if (!(await selected.count())) await page.locator('.assets-tab-button').click();
}

/** Queues the workflow from the frontend at `url` and records what the participant sees. */
async function exercise(context: BrowserContext, url: string, stem: string): Promise<Seen> {
  const page = await context.newPage();
  const viewStatuses: number[] = [];
  page.on('response', (r) => {
    if (r.url().includes('/view?') && r.url().includes(stem)) viewStatuses.push(r.status());
  });
  await page.goto(url);
  await appReady(page);
  // `stem` makes the clip's file names this run's own.
  const prompt = videoPrompt({ color: 0x3366cc, filenamePrefix: `video/${stem}` });
  await page.evaluate(`(async () => {
    window.app.loadApiJson(${JSON.stringify(prompt)}, 'video-parity.json');
    await window.app.queuePrompt(0, 1);
  })()`);
  let preview: Seen['preview'];
  const video = `video[src*="${stem}"]`;
  try {
    await page.waitForSelector(video, { state: 'attached', timeout: 120_000 });
    preview = (await page.evaluate(`(async () => {
      const v = document.querySelector(${JSON.stringify(video)});
      v.muted = true;
      if (v.readyState < 1) await new Promise((r) => v.addEventListener('loadedmetadata', r, { once: true }));
      await v.play();
      const t0 = performance.now();
      while (v.currentTime < 0.2 && performance.now() - t0 < 10000) await new Promise((r) => setTimeout(r, 50));
      const played = v.currentTime >= 0.2;
      v.pause();
      await new Promise((r) => {
        v.addEventListener('seeked', r, { once: true });
        v.currentTime = 1;
        setTimeout(r, 5000);
      });
      return { duration: v.duration, played, seekedTo: v.currentTime };
    })()`)) as Seen['preview'];
  } catch {
    preview = null;
  }
  await openAssets(page);
  const assets = await shows(page, '.sidebar-content-container', stem, 20_000);
  // The queue panel (the action bar's job queue overlay), expanded unless it already is.
  const jobList = '[data-testid="job-assets-list"]';
  if (!(await page.locator(jobList).count())) await page.getByTestId('queue-overlay-toggle').click();
  const queue = await shows(page, jobList, stem, 15_000);
  await page.reload();
  await appReady(page);
  const previewAfterReload = await page
    .waitForSelector(video, { state: 'attached', timeout: 15_000 })
    .then(() => true)
    .catch(() => false);
  await openAssets(page);
  const afterReload = await shows(page, '.sidebar-content-container', stem, 20_000);
  await page.close();
  return { preview, assets, queue, afterReload, previewAfterReload, viewStatuses };
}

beforeAll(async () => {
  if (SKIP_REASON) return;
  dataDir = mkdtempSync(join(tmpdir(), 'cm-e2e-video-'));
  const port = await freePort();
  serverUrl = `http://127.0.0.1:${port}`;
  const env = {
    DATA_DIR: dataDir,
    HOST: '127.0.0.1',
    PORT: String(port),
    LOG_LEVEL: 'info',
    ADMIN_PASSWORD,
    WORKER_TOKENS: `gpu:${WORKER_TOKEN}`,
  };
  await startServe(procs, env);
  await addUser(procs, env, 'user001', USER_PASSWORD);
  procs.run(
    'worker',
    ['src/cli/index.ts', 'worker', '--server', serverUrl, '--comfyui', REAL_COMFYUI!, '--name', 'gpu1'],
    { COMFY_MULTI_TOKEN: WORKER_TOKEN, LOG_LEVEL: 'info' },
  );
  const basic = basicAuth('user001', USER_PASSWORD);
  try {
    await waitFor(
      async () =>
        (await fetch(`${serverUrl}/user001/`, { headers: { authorization: basic } })).status === 200,
      90_000,
      'the frontend mirrored from the worker',
    );
  } catch {
    notMirrored = 'the worker did not mirror a frontend from COMFYUI_URL';
  }
  browser = await launchChromium(['--autoplay-policy=no-user-gesture-required']);
}, 180_000);

afterEach((ctx) => {
  if (ctx.task.result?.state === 'fail') console.error(procs.logs());
});

afterAll(async () => {
  await browser?.close();
  for (const p of procs.all) await procs.stop(p);
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

describe.skipIf(SKIP_REASON !== null)(
  `a video in the real ComfyUI frontend${SKIP_REASON ? ` (skipped: ${SKIP_REASON})` : ''}`,
  () => {
    it('shows a participant in comfy-multi what a plain ComfyUI shows (or more)', async (ctx) => {
      if (notMirrored) ctx.skip(notMirrored);
      const stem = `cmparity${Date.now()}`;
      const plainContext = await browser.newContext({ viewport: { width: 1400, height: 900 } });
      const plain = await exercise(plainContext, `${REAL_COMFYUI}/`, `${stem}p`);
      await plainContext.close();

      const login = await fetch(`${serverUrl}/user001/api/users`, {
        headers: { authorization: basicAuth('user001', USER_PASSWORD) },
      });
      const session = /cm_session=([^;]+)/.exec(login.headers.get('set-cookie') ?? '')![1]!;
      const mineContext = await browser.newContext({ viewport: { width: 1400, height: 900 } });
      await mineContext.addCookies([{ name: 'cm_session', value: session, url: serverUrl }]);
      const mine = await exercise(mineContext, `${serverUrl}/user001/`, `${stem}m`);
      await mineContext.close();
      console.log('side by side', JSON.stringify({ plain, mine }));

      // The node preview: on both sides a <video> that plays and seeks (served with ranges).
      for (const seen of [plain, mine]) {
        expect(seen.preview).not.toBeNull();
        expect(seen.preview!.duration).toBeCloseTo(3, 1); // 24 frames at 8 fps
        expect(seen.preview!.played).toBe(true);
        expect(seen.preview!.seekedTo).toBeCloseTo(1, 1);
      }
      expect(mine.viewStatuses.every((s) => s === 200 || s === 206)).toBe(true);
      // Never less than the plain ComfyUI shows...
      for (const k of ['assets', 'queue', 'afterReload', 'previewAfterReload'] as const)
        if (plain[k]) expect(mine[k], k).toBe(true);
      // ...and comfy-multi answers the frontend's /api/jobs (ComfyUI has it from v0.6; 0.3.64
      // answers 404, so there the Assets and queue panels stay empty).
      expect(mine.assets).toBe(true);
      expect(mine.queue).toBe(true);
      expect(mine.afterReload).toBe(true);
      expect(mine.previewAfterReload).toBe(true);
    }, 600_000);
  },
);
