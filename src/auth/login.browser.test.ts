/**
 * The login form in Debian's Chromium (issue 10): a crafted `next` cannot send a participant to
 * another site after they typed their real password, a page on another site cannot sign the
 * browser in, and after logout the old cookie is dead on the server.
 */
import type { AddressInfo } from 'node:net';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHarness, type Harness } from '../../test/support/app-harness.js';
import {
  ALLOW_LOOPBACK_FROM_FULFILLED_PAGES,
  HAS_CHROMIUM,
  launchChromium,
} from '../../test/support/chromium.js';
import { SESSION_COOKIE } from './sessions.js';

const PASSWORD = 'pw-user001-0123456789';

describe.skipIf(!HAS_CHROMIUM)('signing in with Chromium', () => {
  let h: Harness;
  let base: string;
  let browser: Browser;

  beforeAll(async () => {
    h = await startHarness();
    await h.services.accounts.create('user001', 'participant', PASSWORD);
    await h.app.listen({ port: 0, host: '127.0.0.1' });
    base = `http://127.0.0.1:${(h.app.server.address() as AddressInfo).port}`;
    // The attacker's page is fulfilled by the test; let it reach the loopback server.
    browser = await launchChromium([ALLOW_LOOPBACK_FROM_FULFILLED_PAGES]);
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await h?.close();
  });

  it('stays on this site whatever next the login link carries', async () => {
    for (const next of ['/%09/evil.example', '/%5Cevil.example', '/%0a/evil.example', '//evil.example']) {
      const context = await browser.newContext();
      const page = await context.newPage();
      const visited: string[] = [];
      // Nothing may leave the server: record and stop any request to another host.
      await page.route('**/*', (route) => {
        const url = route.request().url();
        visited.push(url);
        if (!url.startsWith(base)) return route.abort();
        if (url === `${base}/user001/`) return route.fulfill({ status: 200, body: 'home' });
        return route.continue();
      });
      await page.goto(`${base}/login?next=${next}`);
      await page.fill('#user', 'user001');
      await page.fill('#password', PASSWORD);
      await Promise.all([page.waitForURL(`${base}/user001/`), page.click('button[type=submit]')]);
      expect(
        visited.filter((u) => !u.startsWith(base)),
        next,
      ).toEqual([]);
      await context.close();
    }
  });

  it('refuses a sign-in form posted from another site', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.route('http://attacker.example/', (route) =>
      route.fulfill({
        status: 200,
        contentType: 'text/html',
        body: `<form method="post" action="${base}/login" id="f">
          <input name="user" value="user001"><input name="password" value="${PASSWORD}"></form>
          <script>document.getElementById('f').submit()</script>`,
      }),
    );
    const answer = page.waitForResponse(`${base}/login`);
    await page.goto('http://attacker.example/');
    const res = await answer;
    expect(res.status()).toBe(403);
    expect((await context.cookies(base)).map((c) => c.name)).not.toContain(SESSION_COOKIE);
    await context.close();
  });

  it('ends the session on logout: a copy of the old cookie no longer signs in', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.route(`${base}/user001/`, (route) => route.fulfill({ status: 200, body: 'home' }));
    await page.goto(`${base}/login`);
    await page.fill('#user', 'user001');
    await page.fill('#password', PASSWORD);
    await Promise.all([page.waitForURL(`${base}/user001/`), page.click('button[type=submit]')]);
    const cookie = (await context.cookies(base)).find((c) => c.name === SESSION_COOKIE)!;
    expect(cookie).toBeDefined();
    const before = await h.app.inject({
      url: '/user001/api/queue',
      cookies: { [SESSION_COOKIE]: cookie.value },
    });
    expect(before.statusCode).toBe(200);

    await page.goto(`${base}/logout`);
    expect(page.url()).toBe(`${base}/login`);
    const after = await h.app.inject({
      url: '/user001/api/queue',
      cookies: { [SESSION_COOKIE]: cookie.value },
    });
    expect(after.statusCode).toBe(401);
    await context.close();
  });
});
