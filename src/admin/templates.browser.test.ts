/**
 * Workshop templates on the dashboard, in Debian's Chromium (playwright-core): an instructor signs
 * in, uploads a workflow file with a thumbnail, gets one clear error for a broken file, uploads a
 * second one and moves it up; a participant's Templates dialog endpoint then lists the "Workshop"
 * category first, in that order. A screenshot goes to test-artifacts/admin/templates.png.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startControlPlane, type ControlPlane } from '../../test/support/worker-hub-kit.js';
import { saveEnv, setCurrentEnv } from '../dispatch/env-snapshots.js';
import { testSnapshot, tinyPng } from '../../test/support/gateway-kit.js';
import { UI_DIST } from './index.js';

const CHROMIUM = '/usr/bin/chromium';
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const UI_DIR = fileURLToPath(new URL('./ui/', import.meta.url));
const ARTIFACTS = join(ROOT, 'test-artifacts', 'admin');
const PASSWORD = 'teacher-password-123';
const run = promisify(execFile);

function newest(dir: string): number {
  let t = 0;
  for (const name of readdirSync(dir)) {
    if (name === 'dist' || name === 'node_modules') continue;
    const p = join(dir, name);
    const st = statSync(p);
    t = Math.max(t, st.isDirectory() ? newest(p) : st.mtimeMs);
  }
  return t;
}

/** Builds the dashboard when dist is missing or older than its sources. */
async function ensureUiBuilt(): Promise<void> {
  const index = join(UI_DIST, 'index.html');
  if (existsSync(index) && statSync(index).mtimeMs >= newest(UI_DIR)) return;
  await run(
    process.execPath,
    [join(ROOT, 'node_modules/vite/bin/vite.js'), 'build', '--config', join(UI_DIR, 'vite.config.ts')],
    { cwd: ROOT },
  );
}

const workflow = (width: number) =>
  JSON.stringify({
    nodes: [
      {
        id: 1,
        type: 'EmptyLatentImage',
        pos: [0, 0],
        size: [300, 100],
        flags: {},
        order: 0,
        mode: 0,
        inputs: [],
        outputs: [{ name: 'LATENT', type: 'LATENT', links: null }],
        properties: {},
        widgets_values: [width, 512, 1],
      },
    ],
    links: [],
    version: 0.4,
  });

describe.skipIf(!existsSync(CHROMIUM))('workshop templates on the dashboard, in Chromium', () => {
  let cp: ControlPlane;
  let browser: Browser;
  let page: Page;

  beforeAll(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    await ensureUiBuilt();
    cp = await startControlPlane({});
    await cp.services.accounts.create('teacher', 'instructor', PASSWORD);
    await cp.services.accounts.create('user001', 'participant', 'pw-user001-0123456789');
    // A worker has described its ComfyUI, so uploads are checked by the converter.
    const env = testSnapshot();
    const hash = createHash('sha256').update(JSON.stringify(env)).digest('hex');
    await saveEnv(cp.services.store, hash, env);
    await setCurrentEnv(cp.services.store, { hash, workerId: 'gpu1', at: Date.now() });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run'],
    });
    const context = await browser.newContext({ viewport: { width: 1366, height: 900 }, locale: 'en-GB' });
    page = await context.newPage();
  }, 180_000);

  afterAll(async () => {
    await browser?.close();
    await cp?.close();
  });

  it('uploads, refuses a broken file clearly, reorders; participants see the Workshop category first', async () => {
    await page.goto(`${cp.url}/login?next=/admin/`);
    await page.getByLabel('User name').fill('teacher');
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL(`${cp.url}/admin/`);
    const section = page.locator('#templates');
    await section.getByText('No workshop templates yet').waitFor();

    const form = page.getByRole('form', { name: 'Upload a template' });
    const uploadOne = async (
      name: string,
      body: string,
      title: string,
      description: string,
      thumb?: Buffer,
    ) => {
      await form
        .getByLabel('Workflow file')
        .setInputFiles({ name, mimeType: 'application/json', buffer: Buffer.from(body) });
      await form.getByLabel('Title').fill(title);
      await form.getByLabel('Description').fill(description);
      if (thumb)
        await form
          .getByLabel('Thumbnail')
          .setInputFiles({ name: 'thumb.png', mimeType: 'image/png', buffer: thumb });
      await form.getByRole('button', { name: 'Upload' }).click();
    };

    await uploadOne('text-to-image.json', workflow(512), 'Text to image', 'Your first picture.', tinyPng());
    await section.locator('li.template', { hasText: 'Text to image' }).waitFor();
    // The thumbnail is shown from the server.
    await expect
      .poll(() =>
        section
          .locator('li.template img')
          .first()
          .evaluate((img) => (img as unknown as { naturalWidth: number }).naturalWidth),
      )
      .toBe(1);

    // A broken file: one clear message, nothing added.
    await uploadOne('broken.json', '{"nodes": [', 'Broken', 'x');
    const alert = form.getByRole('alert');
    await alert.waitFor();
    expect(await alert.textContent()).toContain('not valid JSON');
    expect(await section.locator('li.template').count()).toBe(1);

    await uploadOne('video.json', workflow(768), 'Video', 'Moving pictures.');
    await section.locator('li.template', { hasText: 'Video' }).waitFor();
    expect(await section.locator('li.template .template-title').allTextContents()).toEqual([
      'Text to image',
      'Video',
    ]);

    await section.getByRole('button', { name: 'Move Video up' }).click();
    await expect
      .poll(() => section.locator('li.template .template-title').allTextContents())
      .toEqual(['Video', 'Text to image']);
    await page.screenshot({ path: join(ARTIFACTS, 'templates.png'), fullPage: true });

    // What a participant's Templates dialog reads: the Workshop category first, in that order.
    const res = await fetch(`${cp.url}/user001/templates/index.json`, {
      headers: { authorization: `Basic ${Buffer.from('user001:pw-user001-0123456789').toString('base64')}` },
    });
    const index = (await res.json()) as {
      title: string;
      templates: { title: string; description: string }[];
    }[];
    expect(index[0]!.title).toBe('Workshop');
    expect(index[0]!.templates.map((t) => [t.title, t.description])).toEqual([
      ['Video', 'Moving pictures.'],
      ['Text to image', 'Your first picture.'],
    ]);

    // Every step is in the activity log.
    const actions = (await cp.services.audit.recent(50)).map((e) => `${e.action}:${e.ok}`);
    expect(actions).toEqual(
      expect.arrayContaining(['template.add:true', 'template.add:false', 'template.reorder:true']),
    );
  }, 120_000);
});
