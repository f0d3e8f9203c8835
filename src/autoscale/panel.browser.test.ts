/**
 * The dashboard's "GPUs on demand" panel in a real browser (Debian's Chromium through
 * playwright-core) against a real control plane with a `command` provider whose GPUs never
 * register: the instance and its decision show live, and "Stop all" works through the page's
 * own CSRF-checked action. Screenshot: test-artifacts/admin/autoscale-panel.png.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ENV_WORKER_TOKEN, startControlPlane } from '../../test/support/worker-hub-kit.js';
import { modelFreePrompt } from '../../test/support/prompts.js';
import { HAS_CHROMIUM, launchChromium } from '../../test/support/chromium.js';
import {
  DASHBOARD_ARTIFACTS as ARTIFACTS,
  INSTRUCTOR_PASSWORD as PASSWORD,
  submitLogin,
} from '../../test/support/dashboard.js';
import { UI_DIST } from '../admin/index.js';

describe.skipIf(!HAS_CHROMIUM || !existsSync(join(UI_DIST, 'index.html')))('GPUs on demand panel', () => {
  it('shows the starting GPU and its reason live, and stops everything on request', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cm-as-panel-'));
    const list = join(dir, 'instances');
    writeFileSync(list, '');
    const cp = await startControlPlane({
      AUTOSCALE_PROVIDER: 'command',
      AUTOSCALE_WORKER_TOKEN: ENV_WORKER_TOKEN,
      AUTOSCALE_COMMAND_UP: 'echo "i-$WORKER_NAME"',
      AUTOSCALE_COMMAND_DOWN: 'true',
      AUTOSCALE_COMMAND_LIST: 'true',
      AUTOSCALE_INTERVAL_SECONDS: '1',
      AUTOSCALE_PRICE_PER_HOUR: '0.69',
    });
    const browser = await launchChromium();
    try {
      await cp.services.accounts.create('teacher', 'instructor', PASSWORD);
      const page = await (await browser.newContext({ viewport: { width: 1366, height: 900 } })).newPage();
      await page.goto(`${cp.url}/login?next=/admin/`);
      await submitLogin(page);
      await page.locator('#autoscale').waitFor();
      expect(await page.locator('#autoscale').textContent()).toContain('No GPU running');

      await cp.services.queue.enqueue({ user: 'teacher', prompt: modelFreePrompt() });
      await page
        .locator('#autoscale')
        .getByText(/: 1 waiting, 0 running, 0 workers/)
        .waitFor();
      await page
        .locator('#autoscale')
        .getByText(/auto-command-\S+ (asked for|starting)/)
        .waitFor()
        .catch((err: unknown) => {
          throw new Error(
            `${String(err)}; decisions: ${JSON.stringify(cp.services.autoscaler!.view().decisions)}`,
          );
        });
      const text = (await page.locator('#autoscale').textContent()) ?? '';
      expect(text).toContain('command (command) · 0–2 workers');
      expect(text).toContain('typical start not measured yet');
      // The usage CSV downloads with the page's own session (instructor-only endpoint).
      const href = await page
        .locator('#autoscale a', { hasText: 'Download GPU usage (CSV)' })
        .getAttribute('href');
      const csv = await page.evaluate(async (url) => {
        const res = await fetch(url);
        return `${res.status} ${(await res.text()).split('\r\n')[0]}`;
      }, href!);
      expect(csv).toBe('200 kind,day,worker,participant,instance_type,gpu_seconds,price_per_hour,cost');
      mkdirSync(ARTIFACTS, { recursive: true });
      await page.locator('#autoscale').screenshot({ path: join(ARTIFACTS, 'autoscale-panel.png') });

      await page.locator('#autoscale').getByRole('button', { name: 'Stop all' }).click();
      await page.getByRole('button', { name: 'Stop all GPUs' }).click();
      await page.locator('#autoscale').getByText('STOP ALL is on').waitFor();
      expect(cp.services.autoscaler!.view().stopAll).toBe(true);
      expect((await cp.services.audit.recent(5)).map((e) => e.action)).toContain('autoscale.stop_all');
    } finally {
      await browser.close();
      await cp.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 90_000);
});
