/**
 * In Debian's Chromium: a participant uploads their own LoRA from ComfyUI through the workshop
 * extension's **Workshop → Upload my LoRA…** command (a stand-in of the frontend's extension API
 * records the command, the toasts and the node-definition refresh): a good file lands in their
 * loader lists; a pickle is refused with the server's message shown as an error toast.
 */
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ALLOW_LOOPBACK_FROM_FULFILLED_PAGES,
  HAS_CHROMIUM,
  launchChromium,
} from '../../test/support/chromium.js';
import { makeSafetensors } from '../../test/support/loras.js';
import { basicAuth } from '../../test/support/serve.js';
import { type Harness, PARTICIPANT_PASSWORD, startParticipantSite } from '../../test/support/gateway-kit.js';

const PASSWORD = PARTICIPANT_PASSWORD;

/** The frontend's extension API, reduced to what the command uses. */
const PAGE = `<!doctype html><meta charset="utf-8"><title>mini ComfyUI</title><body>
<script type="module">
const base = location.pathname.split('/').slice(0, -1).join('/');
window.toasts = [];
window.executed = [];
window.comfyAPI = {
  app: { app: {
    graph: {},
    extensionManager: {
      toast: { add(t) { window.toasts.push(t); } },
      command: { async execute(id) { window.executed.push(id); } },
    },
    registerExtension(ext) { window.ext = ext; ext.setup && ext.setup(); },
    async loadGraphData() {},
  } },
  api: { api: new EventTarget() },
};
await import(base + '/extensions/comfy-multi/workshop.js');
</script></body>`;

describe.skipIf(!HAS_CHROMIUM)('a participant uploads a LoRA from ComfyUI', () => {
  let h: Harness;
  let base: string;
  let browser: Browser;

  beforeAll(async () => {
    ({ h, base } = await startParticipantSite());
    // The page is fulfilled by the test, not loaded from 127.0.0.1: let it reach the server.
    browser = await launchChromium([ALLOW_LOOPBACK_FROM_FULFILLED_PAGES]);
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await h?.close();
  });

  it('through the Workshop menu command: stored and listed, or refused with the reason', async () => {
    const context = await browser.newContext({
      extraHTTPHeaders: { authorization: basicAuth('user001', PASSWORD) },
    });
    const page = await context.newPage();
    await page.route(`${base}/user001/`, (route) =>
      route.fulfill({ status: 200, contentType: 'text/html', body: PAGE }),
    );
    await page.goto(`${base}/user001/`);
    await page.waitForFunction("window.ext && window.ext.name === 'comfy-multi.workshop'");
    expect(await page.evaluate('window.ext.menuCommands')).toEqual([
      { path: ['Workshop'], commands: ['ComfyMulti.UploadLora'] },
    ]);
    // Browser-side code is given as strings: this project compiles without the DOM library.
    const run = () =>
      page.evaluate("window.ext.commands.find((c) => c.id === 'ComfyMulti.UploadLora').function()");

    const lora = makeSafetensors({ tensors: 2, n: 16 });
    await run();
    await page.setInputFiles('#comfy-multi-lora-input', {
      name: 'sketchy.safetensors',
      mimeType: 'application/octet-stream',
      buffer: lora,
    });
    await page.waitForFunction('window.toasts.length === 1');
    expect(await page.evaluate('window.toasts[0]')).toMatchObject({
      severity: 'success',
      summary: 'LoRA uploaded',
    });
    await page.waitForFunction("window.executed.includes('Comfy.RefreshNodeDefinitions')");
    const listed = await page.evaluate("fetch('api/models/loras').then((r) => r.json())");
    expect(listed).toEqual(['sketchy.safetensors']);

    await run();
    await page.setInputFiles('#comfy-multi-lora-input', {
      name: 'old.ckpt',
      mimeType: 'application/octet-stream',
      buffer: Buffer.from([0x80, 0x02, 0x7d, 0x71, 0x00]),
    });
    await page.waitForFunction('window.toasts.length === 2');
    const refused = (await page.evaluate('window.toasts[1]')) as { severity: string; detail: string };
    expect(refused.severity).toBe('error');
    expect(refused.detail).toMatch(/pickle/i);
    await context.close();
  }, 60_000);
});
