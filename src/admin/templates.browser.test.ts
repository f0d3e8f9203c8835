/**
 * Workshop templates on the dashboard, in Debian's Chromium (playwright-core): an instructor signs
 * in, uploads a workflow file with a thumbnail, gets one clear error for a broken file, uploads a
 * second one and moves it up; a participant's Templates dialog endpoint then lists the "Workshop"
 * category first, in that order. A screenshot goes to test-artifacts/admin/templates.png.
 */
import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startControlPlane, type ControlPlane } from '../../test/support/worker-hub-kit.js';
import { saveEnv, setCurrentEnv } from '../dispatch/env-snapshots.js';
import { testSnapshot, tinyPng } from '../../test/support/gateway-kit.js';
import { emptyLatentWorkflow } from '../../test/support/prompts.js';
import { HAS_CHROMIUM, launchChromium } from '../../test/support/chromium.js';
import {
  DASHBOARD_ARTIFACTS as ARTIFACTS,
  INSTRUCTOR_PASSWORD as PASSWORD,
  ensureDashboardBuilt,
  signInToDashboard,
} from '../../test/support/dashboard.js';

describe.skipIf(!HAS_CHROMIUM)('workshop templates on the dashboard, in Chromium', () => {
  let cp: ControlPlane;
  let browser: Browser;
  let page: Page;

  beforeAll(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    await ensureDashboardBuilt();
    cp = await startControlPlane({});
    await cp.services.accounts.create('teacher', 'instructor', PASSWORD);
    await cp.services.accounts.create('user001', 'participant', 'pw-user001-0123456789');
    // A worker has described its ComfyUI, so uploads are checked by the converter.
    const env = testSnapshot();
    const hash = createHash('sha256').update(JSON.stringify(env)).digest('hex');
    await saveEnv(cp.services.store, hash, env);
    await setCurrentEnv(cp.services.store, { hash, workerId: 'gpu1', at: Date.now() });
    browser = await launchChromium();
    const context = await browser.newContext({ viewport: { width: 1366, height: 900 }, locale: 'en-GB' });
    page = await context.newPage();
  }, 180_000);

  afterAll(async () => {
    await browser?.close();
    await cp?.close();
  });

  it('uploads, refuses a broken file clearly, reorders; participants see the Workshop category first', async () => {
    await signInToDashboard(page, cp.url);
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

    await uploadOne(
      'text-to-image.json',
      emptyLatentWorkflow(),
      'Text to image',
      'Your first picture.',
      tinyPng(),
    );
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

    await uploadOne('video.json', emptyLatentWorkflow({ width: 768 }), 'Video', 'Moving pictures.');
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
