/**
 * In Debian's Chromium: a participant signs in (HTTP Basic), opens a small page under `/user001/`
 * that uses the ComfyUI frontend's base path and WebSocket handshake, loads the workshop extension
 * through a stand-in of the frontend's extension API, and sees a job's progress arrive, the
 * workshop banner, the instructor's broadcast and the default workflow being opened once.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setBroadcast } from '../broadcast/broadcast.js';
import {
  ALLOW_LOOPBACK_FROM_FULFILLED_PAGES,
  HAS_CHROMIUM,
  launchChromium,
} from '../../test/support/chromium.js';
import { basicAuth } from '../../test/support/serve.js';
import {
  runJobAsWorker,
  type Harness,
  PARTICIPANT_PASSWORD,
  startParticipantSite,
} from '../../test/support/gateway-kit.js';

const PASSWORD = PARTICIPANT_PASSWORD;
const START = { last_node_id: 7, nodes: [], note: 'workshop start' };

/** What the ComfyUI frontend does, reduced: api base from the path, /ws with feature_flags first. */
const PAGE = `<!doctype html><meta charset="utf-8"><title>mini ComfyUI</title><body>
<script type="module">
const base = location.pathname.split('/').slice(0, -1).join('/');
window.events = [];
window.loaded = [];
const api = new EventTarget();
window.comfyAPI = {
  app: { app: {
    graph: {},
    registerExtension(ext) { window.extName = ext.name; ext.setup && ext.setup(); },
    async loadGraphData(wf, clean, restore, name) { window.loaded.push({ wf, name }); },
  } },
  api: { api },
};
const ws = new WebSocket((location.protocol === 'https:' ? 'wss' : 'ws') + '://' + location.host + base + '/ws?clientId=browser-tab');
ws.binaryType = 'arraybuffer';
ws.addEventListener('open', () => ws.send(JSON.stringify({ type: 'feature_flags', data: { supports_preview_metadata: true } })));
ws.addEventListener('message', (e) => {
  if (typeof e.data !== 'string') { window.events.push({ type: 'binary:' + new DataView(e.data).getUint32(0) }); return; }
  const m = JSON.parse(e.data);
  window.events.push(m);
  if (m.type === 'status') api.dispatchEvent(new CustomEvent('status', { detail: m.data.status }));
});
window.queuePrompt = async (prompt) => {
  const r = await fetch(base + '/api/prompt', { method: 'POST', body: JSON.stringify({ prompt, client_id: 'browser-tab' }) });
  return r.json();
};
await import(base + '/extensions/comfy-multi/workshop.js');
</script></body>`;

describe.skipIf(!HAS_CHROMIUM)('a participant in Chromium', () => {
  let h: Harness;
  let base: string;
  let browser: Browser;
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cm-browser-'));
    await writeFile(join(dir, 'start.json'), JSON.stringify(START));
    ({ h, base } = await startParticipantSite({ DEFAULT_WORKFLOW: join(dir, 'start.json') }));
    // The stand-in page is fulfilled by the test, not loaded from 127.0.0.1: let it reach the server.
    browser = await launchChromium([ALLOW_LOOPBACK_FROM_FULFILLED_PAGES]);
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await h?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("sees the banner, the broadcast, the default workflow and a job's progress", async () => {
    await setBroadcast(h.services.store, 'Welcome to the workshop!', 'teacher');
    const context = await browser.newContext({
      // Signed in as after the login form: Basic on every request (a session cookie follows).
      extraHTTPHeaders: { authorization: basicAuth('user001', PASSWORD) },
    });
    const page = await context.newPage();
    // The frontend's index.html is served by another module; this page stands in for it.
    await page.route(`${base}/user001/`, (route) =>
      route.fulfill({ status: 200, contentType: 'text/html', body: PAGE }),
    );
    const redirect = await page.request.get(`${base}/user001`, { maxRedirects: 0 });
    expect(redirect.status()).toBe(302);
    expect(redirect.headers().location).toBe('/user001/');
    await page.goto(`${base}/user001/`);
    // Browser-side code is given as strings: this project compiles without the DOM library.
    const bannerHas = (text: string) =>
      page.waitForFunction(
        `document.querySelector('#comfy-multi-banner')?.textContent?.includes(${JSON.stringify(text)})`,
      );
    // The frontend fetches /users and /settings first: the first visit seeds the default workflow.
    await page.evaluate("fetch('api/users').then(() => fetch('api/settings')).then(() => true)");

    await page.waitForFunction("window.extName === 'comfy-multi.workshop'");
    await bannerHas('No GPU is online');
    await bannerHas('Welcome to the workshop!');

    // Opened once, then marked as opened on the server.
    await page.waitForFunction('window.loaded.length === 1', undefined, { timeout: 15_000 });
    expect(await page.evaluate('window.loaded[0]')).toEqual({ wf: START, name: 'start' });
    await expect
      .poll(() =>
        page.evaluate("fetch('comfy-multi/status').then((r) => r.json()).then((s) => s.defaultWorkflow)"),
      )
      .toBeNull();

    const prompt = {
      1: { class_type: 'EmptyImage', inputs: { width: 64, height: 48, batch_size: 1, color: 0 } },
      2: { class_type: 'SaveImage', inputs: { images: ['1', 0], filename_prefix: 'browser' } },
    };
    const { prompt_id: id } = (await page.evaluate(`window.queuePrompt(${JSON.stringify(prompt)})`)) as {
      prompt_id: string;
    };
    expect(typeof id).toBe('string');
    await bannerHas('waiting: 1');
    await runJobAsWorker(h, { preview: Buffer.from([0, 0, 0, 1, 0, 0, 0, 1, 0xff, 0xd8]) });
    await page.waitForFunction(
      `window.events.some((e) => e.type === 'executing' && e.data && e.data.node === null && e.data.prompt_id === ${JSON.stringify(id)})`,
    );
    const events = (await page.evaluate('window.events')) as { type: string; data?: { sid?: string } }[];
    const types = events.map((e) => e.type);
    expect(events[0]).toMatchObject({ type: 'status', data: { sid: 'browser-tab' } });
    expect(types).toContain('feature_flags');
    expect(types).toContain('progress');
    expect(types).toContain('executed');
    expect(types).toContain('execution_success');
    // The tab announced supports_preview_metadata, so previews come as type 4.
    expect(types).toContain('binary:4');
    await context.close();
  }, 60_000);
});
