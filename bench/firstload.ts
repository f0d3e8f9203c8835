/**
 * First load on workshop Wi-Fi: the bytes one participant's browser receives (headers included,
 * as Chromium counts them on the wire) to open ComfyUI, and to reload it, from comfy-multi at
 * `/<user>/` and from ComfyUI itself started with `--enable-compress-response-body` (the anchor).
 *
 * - `<side>.first_load_kb`: received for a first load into an empty browser cache, until the
 *   network is idle; `first_load_uncompressed_kb`: the same responses' bodies once decoded (what
 *   they would cost uncompressed); `first_load_ratio_pct`: wire / uncompressed bodies;
 * - `<side>.reload_kb`: received for a reload (F5) in the same browser;
 * - `<side>.requests`: requests of the first load.
 *
 * The frontend is the real build at /tmp/fe-build (FRONTEND_BUILD to change it), else the small
 * test/fixtures/mini-frontend (then `real_frontend` is 0 and the figures say little). comfy-multi
 * mirrors it from a worker, as in a workshop, and serves it once its compressed copies are made.
 * The anchor runs only with COMFYUI_SRC (a ComfyUI checkout; started on a free port with the Python
 * stand-ins of /tmp/real-comfyui/stubs, or COMFYUI_STUBS), serving the same frontend build; the
 * worker then uses that ComfyUI too, so both sides send the same object_info.
 *
 * Run: `npm run bench -- firstload` (needs /usr/bin/chromium).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BrowserContext } from 'playwright-core';
import { pino } from 'pino';
import { listen, startHarness, type Harness } from '../test/support/gateway-kit.js';
import { startAgent, type AgentHandle } from '../src/worker/agent/index.js';
import { launchChromium } from '../test/support/chromium.js';
import { startStandin, type Standin } from '../test/support/comfyui-standin/server.js';
import { freePort } from '../test/support/redis-server.js';

type Figures = Record<string, number>;

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const TOKEN = 'bench-firstload-worker-token-0123456789';
const PASSWORD = 'bench-firstload-password-0123456789';

async function until<T>(fn: () => Promise<T | null | false>, timeoutMs: number, what: string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn().catch(() => null);
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

interface Load {
  wireBytes: number;
  decodedBytes: number;
  requests: number;
}

/**
 * Loads `url` in the context's page (a reload when `reload`), counting what Chromium's network
 * layer reports per finished request: `encodedDataLength` (bytes received, headers included) and
 * the decoded body bytes.
 */
async function measure(context: BrowserContext, url: string, reload: boolean): Promise<Load> {
  const page = context.pages()[0] ?? (await context.newPage());
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.enable');
  // A reload as F5 does it: Chromium revalidates what its cache holds, and nothing is bypassed.
  await cdp.send('Network.setCacheDisabled', { cacheDisabled: false });
  const decoded = new Map<string, number>();
  const urls = new Map<string, string>();
  const perUrl: [string, number][] = [];
  let wireBytes = 0;
  let requests = 0;
  // `data:` URLs (a wasm module inlined in a bundle) cross no network: not counted.
  const network = (id: string) => urls.has(id);
  cdp.on('Network.requestWillBeSent', (e: { requestId: string; request: { url: string } }) => {
    if (!/^https?:/.test(e.request.url)) return;
    requests += 1;
    urls.set(e.requestId, e.request.url);
  });
  cdp.on('Network.dataReceived', (e: { requestId: string; dataLength: number }) => {
    if (network(e.requestId)) decoded.set(e.requestId, (decoded.get(e.requestId) ?? 0) + e.dataLength);
  });
  cdp.on('Network.loadingFinished', (e: { requestId: string; encodedDataLength: number }) => {
    if (!network(e.requestId)) return;
    wireBytes += e.encodedDataLength;
    perUrl.push([urls.get(e.requestId) ?? '?', e.encodedDataLength]);
  });
  if (reload) await page.reload({ waitUntil: 'load' });
  else await page.goto(url, { waitUntil: 'load' });
  await page.waitForLoadState('networkidle', { timeout: 60_000 }).catch(() => undefined);
  // Lazy chunks the app asks for once it runs.
  await new Promise((r) => setTimeout(r, 2000));
  await page.waitForLoadState('networkidle', { timeout: 30_000 }).catch(() => undefined);
  await cdp.detach();
  // BENCH_FIRSTLOAD_DETAIL=1: where the bytes went, largest first (on stderr).
  if (process.env.BENCH_FIRSTLOAD_DETAIL) {
    const top = perUrl.sort((a, b) => b[1] - a[1]).slice(0, 25);
    console.error(`${reload ? 'reload' : 'first load'} of ${url}:`);
    for (const [u, n] of top) console.error(`  ${String(n).padStart(9)}  ${new URL(u).pathname}`);
  }
  return { wireBytes, decodedBytes: [...decoded.values()].reduce((a, b) => a + b, 0), requests };
}

async function measureSide(context: BrowserContext, url: string): Promise<Figures> {
  const first = await measure(context, url, false);
  const again = await measure(context, url, true);
  const kb = (n: number) => Math.round(n / 1024);
  return {
    first_load_kb: kb(first.wireBytes),
    first_load_uncompressed_kb: kb(first.decodedBytes),
    first_load_ratio_pct: Math.round((1000 * first.wireBytes) / Math.max(1, first.decodedBytes)) / 10,
    reload_kb: kb(again.wireBytes),
    requests: first.requests,
  };
}

/** A real ComfyUI with --enable-compress-response-body, on a free port. */
async function startAnchor(src: string, frontend: string): Promise<{ url: string; proc: ChildProcess }> {
  const port = await freePort();
  const stubs = process.env.COMFYUI_STUBS ?? '/tmp/real-comfyui/stubs';
  const proc = spawn(
    '/usr/bin/python3',
    [
      'main.py',
      '--cpu',
      '--listen',
      '127.0.0.1',
      '--port',
      String(port),
      '--front-end-root',
      frontend,
      '--enable-compress-response-body',
    ],
    {
      cwd: src,
      env: { ...process.env, ...(existsSync(stubs) ? { PYTHONPATH: stubs } : {}) },
      stdio: 'ignore',
      detached: true,
    },
  );
  const url = `http://127.0.0.1:${port}`;
  await until(async () => (await fetch(`${url}/system_stats`)).ok, 180_000, 'the anchor ComfyUI');
  return { url, proc };
}

export async function benchFirstLoad(): Promise<Figures> {
  const built = process.env.FRONTEND_BUILD ?? '/tmp/fe-build';
  const real = existsSync(join(built, 'index.html'));
  const frontend = real ? built : join(ROOT, 'test/fixtures/mini-frontend');
  if (!real) console.error(`firstload: no frontend build at ${built}; measuring the mini frontend`);

  let anchor: { url: string; proc: ChildProcess } | undefined;
  let standin: Standin | undefined;
  let agent: AgentHandle | undefined;
  let h: Harness | undefined;
  const browser = await launchChromium();
  const figures: Figures = { real_frontend: real ? 1 : 0 };
  try {
    if (process.env.COMFYUI_SRC) anchor = await startAnchor(process.env.COMFYUI_SRC, frontend);
    else standin = await startStandin({ frontendRoot: frontend });

    h = await startHarness({ WORKER_TOKENS: `gpu:${TOKEN}` });
    await h.services.accounts.create('user001', 'participant', PASSWORD);
    const base = await listen(h);
    agent = startAgent({
      serverUrl: base,
      token: TOKEN,
      comfyuiUrl: anchor?.url ?? standin!.url,
      name: 'gpu-bench',
      prefetch: 0,
      logger: pino({ level: 'silent' }),
      probeIntervalMs: 200,
      backoff: { baseMs: 50, maxMs: 300 },
      frontendRetry: { baseMs: 200, maxMs: 2_000 },
    });
    const cache = h.services.frontendCache!;
    await until(async () => cache.current() !== null, 180_000, 'the mirrored frontend');
    const t0 = Date.now();
    await cache.precompressed();
    figures.precompress_s = Math.round((Date.now() - t0) / 100) / 10;

    const authorization = `Basic ${Buffer.from(`user001:${PASSWORD}`).toString('base64')}`;
    const ours = await browser.newContext({ extraHTTPHeaders: { authorization } });
    try {
      for (const [k, v] of Object.entries(await measureSide(ours, `${base}/user001/`)))
        figures[`comfy_multi.${k}`] = v;
    } finally {
      await ours.close();
    }
    if (anchor) {
      const theirs = await browser.newContext();
      try {
        for (const [k, v] of Object.entries(await measureSide(theirs, `${anchor.url}/`)))
          figures[`anchor.${k}`] = v;
      } finally {
        await theirs.close();
      }
    }
  } finally {
    await browser.close();
    await agent?.stop();
    await h?.close();
    await standin?.close();
    if (anchor?.proc.pid) {
      try {
        process.kill(-anchor.proc.pid, 'SIGTERM');
      } catch {
        anchor.proc.kill('SIGTERM');
      }
    }
  }
  return figures;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await benchFirstLoad());
