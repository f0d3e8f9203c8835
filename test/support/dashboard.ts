/**
 * What the dashboard's browser tests (`src/admin/*.browser.test.ts`, the autoscale panel's) share:
 * a built dashboard, where their screenshots go, and an instructor signing in through the real
 * login form.
 */
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { Page } from 'playwright-core';
import { UI_DIST } from '../../src/admin/index.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const UI_DIR = join(ROOT, 'src', 'admin', 'ui');

/** Where the dashboard tests' screenshots go. */
export const DASHBOARD_ARTIFACTS = join(ROOT, 'test-artifacts', 'admin');

/** The password the tests give their `teacher` instructor account. */
export const INSTRUCTOR_PASSWORD = 'teacher-password-123';

/** Newest modification time under a folder (its build output and dependencies excluded). */
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

/**
 * Builds the dashboard when its dist is missing or older than its sources, so a browser test run
 * on its own sees the current UI (CI runs `npm run build` first, and this is then a no-op).
 */
export async function ensureDashboardBuilt(): Promise<void> {
  const index = join(UI_DIST, 'index.html');
  if (existsSync(index) && statSync(index).mtimeMs >= newest(UI_DIR)) return;
  await promisify(execFile)(
    process.execPath,
    [join(ROOT, 'node_modules/vite/bin/vite.js'), 'build', '--config', join(UI_DIR, 'vite.config.ts')],
    { cwd: ROOT },
  );
}

/** Fills in and submits the login form `page` shows (it does not wait for where it leads). */
export async function submitLogin(
  page: Page,
  user = 'teacher',
  password = INSTRUCTOR_PASSWORD,
): Promise<void> {
  await page.getByLabel('User name').fill(user);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

/** Signs an instructor in through the login form at `base` and waits for the dashboard. */
export async function signInToDashboard(
  page: Page,
  base: string,
  user = 'teacher',
  password = INSTRUCTOR_PASSWORD,
): Promise<void> {
  await page.goto(`${base}/login?next=/admin/`);
  await submitLogin(page, user, password);
  await page.waitForURL(`${base}/admin/`);
}
