/**
 * Debian's Chromium for the `*.browser.test.ts` files, launched through playwright-core with the
 * flags every browser test uses: no sandbox (tests run as root in containers), no GPU, and none
 * of Chromium's own traffic (component updates, background networking, first-run pages), so a
 * test only ever talks to its loopback server.
 */
import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';

/** Whether Chromium is installed; browser tests `describe.skipIf(!HAS_CHROMIUM)`. */
export const HAS_CHROMIUM = existsSync(CHROMIUM);

export const CHROMIUM_ARGS: readonly string[] = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--no-first-run',
];

/**
 * For a page the test fulfils itself (`page.route`) rather than loads from 127.0.0.1: Chromium
 * would treat it as public and block its requests to the loopback server.
 */
export const ALLOW_LOOPBACK_FROM_FULFILLED_PAGES =
  '--disable-features=LocalNetworkAccessChecks,PrivateNetworkAccessChecks,BlockInsecurePrivateNetworkRequests';

/** Launches Chromium with {@link CHROMIUM_ARGS} and then `extraArgs`. The caller closes it. */
export function launchChromium(extraArgs: readonly string[] = []): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, args: [...CHROMIUM_ARGS, ...extraArgs] });
}
