/**
 * In Debian's Chromium, the whole way a participant gets the ComfyUI web frontend when the control
 * plane has no FRONTEND_DIR: a real worker agent copies it from its ComfyUI (the stand-in serving
 * test/fixtures/mini-frontend and a custom node's web folder) to an in-process control plane, which
 * serves it at `/user001/`. The fixture's entry script preloads and lazily imports chunks by
 * relative URLs and then sets the title, so the title proves the base path works.
 *
 * With env COMFYUI_URL, a real ComfyUI (and its real frontend) takes the stand-in's place; then
 * every frontend file under `/user001/` must load and the Vue app or its canvas must appear.
 */
import { fileURLToPath } from 'node:url';
import type { Browser, BrowserContext } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHarness, type Harness } from '../../test/support/app-harness.js';
import { startTestAgent } from '../../test/support/agent.js';
import { HAS_CHROMIUM, launchChromium } from '../../test/support/chromium.js';
import { basicAuth } from '../../test/support/serve.js';
import { startStandin, type Standin } from '../../test/support/comfyui-standin/server.js';
import { listen } from '../../test/support/gateway-kit.js';
import type { AgentHandle } from '../worker/agent/index.js';
import { waitFor } from '../../test/support/processes.js';

const FIXTURES = fileURLToPath(new URL('../../test/fixtures/', import.meta.url));
const TOKEN = 'mirror-browser-worker-token-0123456789';
const PASSWORD = 'pw-user001-0123456789';
/** A real ComfyUI to mirror from instead of the stand-in (its frontend has thousands of files). */
const REAL_COMFYUI = process.env.COMFYUI_URL?.replace(/\/+$/, '') || null;
const MIRROR_TIMEOUT = REAL_COMFYUI ? 600_000 : 30_000;

/** A request the page made that did not succeed. */
interface Failure {
  url: string;
  /** HTTP status, or the network error for a request that got no response. */
  problem: number | string;
}

/**
 * ComfyUI API calls and the socket: answered by the gateway, not part of the frontend. Also
 * `user.css`: the real index.html links it as a hook for users' own styles, but no frontend ships
 * one, so ComfyUI answers 404 too.
 */
function isApi(url: string): boolean {
  const path = new URL(url).pathname;
  return /^\/user001\/(api\/|ws$|user\.css$)/.test(path) || path === '/ws' || path.startsWith('/api/');
}

describe.skipIf(!HAS_CHROMIUM)('the frontend mirrored from a worker, in Chromium', () => {
  let h: Harness;
  let base: string;
  let standin: Standin | undefined;
  let agent: AgentHandle | undefined;
  let browser: Browser;
  let context: BrowserContext | undefined;
  const authorization = basicAuth('user001', PASSWORD);

  beforeAll(async () => {
    // No FRONTEND_DIR: the control plane asks the worker for its frontend.
    h = await startHarness({ WORKER_TOKENS: `gpu:${TOKEN}` });
    await h.services.accounts.create('user001', 'participant', PASSWORD);
    base = await listen(h);
    if (!REAL_COMFYUI) {
      standin = await startStandin({
        frontendRoot: `${FIXTURES}mini-frontend`,
        extensionDirs: { hello: `${FIXTURES}mini-extension` },
      });
    }
    agent = startTestAgent({
      serverUrl: base,
      token: TOKEN,
      comfyuiUrl: REAL_COMFYUI ?? standin!.url,
      name: 'gpu-mirror',
      frontendRetry: { baseMs: 200, maxMs: 2_000 },
    });
    // Before the mirror completes `/user001/` is the 503 waiting page.
    await waitFor(
      async () => {
        const res = await fetch(`${base}/user001/`, { headers: { authorization } });
        // Read the body: an unread response keeps its connection busy, and closing the server
        // would wait for it until the keep-alive timeout.
        await res.arrayBuffer();
        return res.status === 200;
      },
      MIRROR_TIMEOUT,
      'the mirrored frontend at /user001/',
    );
    browser = await launchChromium();
  }, MIRROR_TIMEOUT + 60_000);

  afterAll(async () => {
    await context?.close();
    await browser?.close();
    await agent?.stop();
    await standin?.close();
    await h?.close();
  });

  it(
    REAL_COMFYUI
      ? `loads every frontend file of ${REAL_COMFYUI} under /user001/ and shows the app`
      : 'loads the fixture frontend under /user001/, lazy chunks included',
    async () => {
      expect(h.services.frontend.status()).toMatchObject({ source: 'mirror', cachedVersions: 1 });
      // Signed in as after the login form: Basic on every request (a session cookie follows).
      context = await browser.newContext({
        extraHTTPHeaders: { authorization },
        viewport: { width: 1280, height: 800 },
      });
      const page = await context.newPage();
      const failures: Failure[] = [];
      const requested: string[] = [];
      page.on('request', (r) => requested.push(r.url()));
      page.on('requestfailed', (r) =>
        failures.push({ url: r.url(), problem: r.failure()?.errorText ?? 'failed' }),
      );
      page.on('response', (r) => {
        if (r.status() >= 400) failures.push({ url: r.url(), problem: r.status() });
      });

      const res = await page.goto(`${base}/user001/`);
      expect(res?.status()).toBe(200);

      if (REAL_COMFYUI) {
        // Browser-side code is given as strings: this project compiles without the DOM library.
        await page.waitForFunction("document.querySelector('#vue-app, canvas') !== null", undefined, {
          timeout: 60_000,
        });
        await page.waitForLoadState('networkidle', { timeout: 30_000 }).catch(() => undefined);
        const frontendFailures = failures.filter(
          (f) => new URL(f.url).pathname.startsWith('/user001/') && !isApi(f.url),
        );
        expect(frontendFailures).toEqual([]);
      } else {
        await page.waitForFunction("document.title === 'mini frontend ready'", undefined, {
          timeout: 15_000,
        });
        await page.waitForLoadState('networkidle');
        const text = (await page.textContent('#app')) ?? '';
        expect(text).toContain('hello lazy');
        // The chunk's asset URL was resolved against the chunk's own URL, below the base path.
        expect(text).toContain(`${base}/user001/assets/logo-Zx9Yw8Vu.svg`);
        const paths = requested.map((u) => new URL(u).pathname);
        expect(paths).toEqual(
          expect.arrayContaining([
            '/user001/assets/index-D4f9Lm2Q.js',
            '/user001/assets/Chunk-Ab12Cd34.js',
            '/user001/assets/Chunk-Ab12Cd34.css',
            '/user001/assets/Lazy-Qw8Er7Ty.js',
          ]),
        );
        // The custom node's web files came along, at ComfyUI's paths.
        const hello = await page.evaluate(
          "fetch('extensions/hello/js/hello.js').then(async (r) => [r.status, await r.text()])",
        );
        expect(hello).toEqual([200, expect.stringContaining("registerExtension({ name: 'mini.hello' })")]);
        expect(failures.filter((f) => !isApi(f.url))).toEqual([]);
      }
    },
    REAL_COMFYUI ? 180_000 : 60_000,
  );
});
