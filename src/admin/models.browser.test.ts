/**
 * The dashboard's Models panel in Chromium: an instructor adds a model by URL, sees the download
 * progress live on the worker's row, cancels one, and sees a wrong checksum refused — against a
 * real control plane, a real worker agent beside the ComfyUI stand-in, and a local file server.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGpu, type TestGpu } from '../../test/support/agent.js';
import { HAS_CHROMIUM, launchChromium } from '../../test/support/chromium.js';
import {
  DASHBOARD_ARTIFACTS as ARTIFACTS,
  INSTRUCTOR_PASSWORD as PASSWORD,
  ensureDashboardBuilt,
  signInToDashboard,
} from '../../test/support/dashboard.js';
import { startModelServer, type ModelServer } from '../../test/support/model-server.js';
import { listen, startHarness, type Harness } from '../../test/support/gateway-kit.js';

const TOKEN = 'models-browser-worker-token-0123456789';
const HF_TOKEN = 'hf_browser_secret_0123456789';

describe.skipIf(!HAS_CHROMIUM)('the Models panel in Chromium', () => {
  let h: Harness;
  let base: string;
  let gpu: TestGpu | undefined;
  let files: ModelServer;
  let modelsDir: string;
  let browser: Browser;
  let page: Page;

  beforeAll(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    await ensureDashboardBuilt();
    modelsDir = await mkdtemp(join(tmpdir(), 'cm-models-ui-'));
    files = await startModelServer({ slowChunk: 16_384, slowPauseMs: 40 });
    h = await startHarness({ WORKER_TOKENS: `gpu:${TOKEN}`, MODEL_DOWNLOADS_ALLOW_LOCAL_HTTP: 'true' });
    await h.services.accounts.create('teacher', 'instructor', PASSWORD);
    base = await listen(h);
    gpu = await startTestGpu(h, {
      serverUrl: base,
      token: TOKEN,
      name: 'gpu-ui',
      standin: { modelsDir },
      agent: {
        modelsDir,
        modelProgressMs: 100,
      },
    });
    browser = await launchChromium();
    const context = await browser.newContext({ viewport: { width: 1366, height: 900 }, locale: 'en-GB' });
    page = await context.newPage();
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await gpu?.stop();
    await h?.close();
    await files?.close();
    await rm(modelsDir, { recursive: true, force: true });
  });

  it('adds a model by URL, shows its progress live, cancels one and shows a refused checksum', async () => {
    const good = files.add('/acme/ltx/resolve/main/ltx-2.safetensors', 1_500_000, 'slow');
    files.add('/acme/big/resolve/main/big.safetensors', 20_000_000, 'slow');
    const wrong = files.add('/acme/bad/resolve/main/bad.safetensors', 100_000, 'wrong');

    await signInToDashboard(page, base);
    await page.getByText('Live', { exact: true }).waitFor();
    const panel = page.locator('#models');
    await panel.getByText('No model downloads yet').waitFor();

    const add = async (
      url: string,
      folder: string,
      extra: { sha256?: string; token?: string; keep?: boolean } = {},
    ) => {
      await panel.getByRole('button', { name: 'Add a model' }).click();
      const dialog = page.getByRole('dialog');
      await dialog.locator('input[name=url]').fill(url);
      await dialog.locator('select[name=folder]').selectOption(folder);
      if (extra.sha256) await dialog.locator('input[name=sha256]').fill(extra.sha256);
      if (extra.token) await dialog.locator('input[name=token]').fill(extra.token);
      if (extra.keep === false) await dialog.locator('input[name=workshop]').uncheck();
      await dialog.getByRole('button', { name: 'Download' }).click();
      await dialog.waitFor({ state: 'detached' });
    };

    await add(`${files.url}/acme/ltx/resolve/main/ltx-2.safetensors`, 'checkpoints', {
      sha256: good.sha256,
      token: HF_TOKEN,
    });
    // Kept on the workshop list too (the dialog's default), token and all, never shown.
    const listed = panel.locator('.workshop-models li', { hasText: 'checkpoints/ltx-2.safetensors' });
    await listed.waitFor();
    expect(await listed.textContent()).toContain('with token');
    expect((await h.services.models.workshop()).map((m) => m.filename)).toEqual(['ltx-2.safetensors']);
    const row = panel.locator('li.download', { hasText: 'checkpoints/ltx-2.safetensors' });
    // Live progress: the bar moves while bytes flow, on the worker's row.
    await expect
      .poll(
        async () => Number((await row.locator('[role=progressbar]').getAttribute('aria-valuenow')) ?? 0),
        {
          timeout: 30_000,
        },
      )
      .toBeGreaterThan(0);
    expect(await row.textContent()).toContain('gpu-ui');
    await page.screenshot({ path: join(ARTIFACTS, 'models-01-downloading.png') });
    await expect.poll(() => row.locator('.tag').textContent(), { timeout: 60_000 }).toBe('done');
    expect(await row.textContent()).toContain(`sha256 ${good.sha256.slice(0, 12)}`);
    expect(await page.content()).not.toContain(HF_TOKEN);

    // Cancel a long one from its row.
    await add(`${files.url}/acme/big/resolve/main/big.safetensors`, 'diffusion_models', { keep: false });
    const big = panel.locator('li.download', { hasText: 'diffusion_models/big.safetensors' });
    await expect.poll(() => big.locator('.tag').textContent(), { timeout: 30_000 }).toBe('downloading');
    await big.getByRole('button', { name: 'Cancel' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Cancel the download' }).click();
    await expect.poll(() => big.locator('.tag').textContent(), { timeout: 30_000 }).toBe('cancelled');
    expect(existsSync(join(modelsDir, 'diffusion_models', 'big.safetensors'))).toBe(false);

    // A wrong checksum is refused with one clear sentence.
    await add(`${files.url}/acme/bad/resolve/main/bad.safetensors`, 'vae', { sha256: wrong.sha256 });
    const bad = panel.locator('li.download', { hasText: 'vae/bad.safetensors' });
    await expect.poll(() => bad.locator('.tag').textContent(), { timeout: 30_000 }).toBe('failed');
    expect(await bad.textContent()).toContain(`not the expected ${wrong.sha256}; it was deleted.`);
    await page.screenshot({ path: join(ARTIFACTS, 'models-02-finished.png') });

    // Taking a file off the workshop list.
    const bigListed = panel.locator('.workshop-models li', { hasText: 'vae/bad.safetensors' });
    await bigListed.getByRole('button', { name: 'Remove' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Take it off' }).click();
    await bigListed.waitFor({ state: 'detached' });
    expect((await h.services.models.workshop()).map((m) => `${m.folder}/${m.filename}`)).toEqual([
      'checkpoints/ltx-2.safetensors',
    ]);
    expect(
      (await h.services.audit.recent(20)).filter((e) => e.action === 'model.workshop' && e.ok),
    ).toHaveLength(3);
  }, 180_000);
});
