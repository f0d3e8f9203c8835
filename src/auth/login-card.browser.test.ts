/**
 * In Debian's Chromium, the whole way of a login card: the instructor signs in with the form, opens
 * the cards page from the dashboard's API, a card's QR code is read back from a screenshot (pixels
 * Chromium drew, decoded by jsQR), and a fresh browser — the participant's, with no cookie at all —
 * opens that link and lands in their own ComfyUI (the fixture frontend, whose script sets the title
 * once its base path works). A regenerated card's old link then shows an error page, not JSON.
 */
import { fileURLToPath } from 'node:url';
import jsQRModule from 'jsqr';
import type { Browser } from 'playwright-core';
import { PNG } from 'pngjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHarness, type Harness } from '../../test/support/app-harness.js';
import { HAS_CHROMIUM, launchChromium } from '../../test/support/chromium.js';
import { freePort } from '../../test/support/redis-server.js';
import { updateLoginMaterial } from './login-material-update.js';
import { renderLoginCards } from './login-cards.js';
import { participantsFilePath, type ParticipantEntry } from './login-material.js';

const jsQR = jsQRModule.default;
const FRONTEND = fileURLToPath(new URL('../../test/fixtures/mini-frontend', import.meta.url));
const TEACHER_PASSWORD = 'pw-teach-0123456789';

describe.skipIf(!HAS_CHROMIUM)('a login card, in Chromium', () => {
  let h: Harness;
  let base: string;
  let browser: Browser;

  beforeAll(async () => {
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    h = await startHarness({ FRONTEND_DIR: FRONTEND, PUBLIC_URL: base });
    await h.app.listen({ port, host: '127.0.0.1' });
    await h.services.accounts.create('teach', 'instructor', TEACHER_PASSWORD);
    await h.services.accounts.create('user001', 'participant');
    await h.services.accounts.create('user002', 'participant');
    await updateLoginMaterial(h.services.store, participantsFilePath(h.dataDir), base, { issue: 'missing' });
    browser = await launchChromium();
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await h?.close();
  });

  it('scanning a printed card signs the participant into their own ComfyUI', async () => {
    // The instructor: start page → sign-in form → dashboard; then the cards page.
    const teacher = await browser.newContext({ viewport: { width: 1200, height: 900 } });
    const page = await teacher.newPage();
    await page.goto(`${base}/`);
    await page.fill('#user', 'teach');
    await page.fill('#password', TEACHER_PASSWORD);
    await Promise.all([page.waitForURL(`${base}/admin/`), page.click('button[type=submit]')]);
    const cards = await page.goto(`${base}/api/v1/users/cards`);
    expect(cards?.status()).toBe(200);
    expect(await page.locator('article.card').count()).toBe(2);
    const shot = await page.locator('article.card[data-user="user001"] svg.qr').screenshot();
    await teacher.close();

    const png = PNG.sync.read(shot);
    const link = jsQR(new Uint8ClampedArray(png.data), png.width, png.height)?.data;
    expect(link).toMatch(new RegExp(`^${base}/login/t/user001\\.`));

    // The participant: a browser that never signed in.
    const participant = await browser.newContext();
    const p = await participant.newPage();
    await p.goto(link!);
    expect(new URL(p.url()).pathname).toBe('/user001/');
    await p.waitForFunction("document.title === 'mini frontend ready'", undefined, { timeout: 15_000 });
    // Signed in for the next visit too: the start page sends them back to their ComfyUI.
    await p.goto(`${base}/`);
    expect(new URL(p.url()).pathname).toBe('/user001/');

    // A new card for user001 ends the old one: the old link now shows a page, not JSON.
    await updateLoginMaterial(h.services.store, participantsFilePath(h.dataDir), base, {
      issue: ['user001'],
    });
    const stranger = await browser.newContext();
    const s = await stranger.newPage();
    const res = await s.goto(link!);
    expect(res?.status()).toBe(401);
    expect(await s.locator('h1').textContent()).toBe('Please sign in');
    await s.click('a[href="/"]');
    await s.waitForSelector('form#login');
    await stranger.close();
    await participant.close();
  }, 60_000);

  it('prints eight cards per A4 page and starts every room on a new page', async () => {
    const entries: ParticipantEntry[] = Array.from({ length: 11 }, (_, i) => ({
      user: `user${String(i + 1).padStart(3, '0')}`,
      room: i < 9 ? 'Room A' : 'Room B',
      password: 'Xk3pQ7mZr2Wv9TnB4cHd',
      passwordVersion: 1,
      token: `user${String(i + 1).padStart(3, '0')}.${'A'.repeat(43)}`,
    }));
    const page = await browser.newPage();
    await page.setContent(renderLoginCards(entries, { baseUrl: 'https://workshop.example.org' }));
    const pdf = (await page.pdf({ preferCSSPageSize: true })).toString('latin1');
    await page.close();
    // Room A: 8 + 1 cards on two pages, Room B on a third.
    expect(pdf.match(/\/Type\s*\/Page[^s]/g)).toHaveLength(3);
  });
});
