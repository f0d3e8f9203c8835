/**
 * The dashboard in a real browser (Debian's Chromium through playwright-core) against a real
 * control plane on a free port, with GPU workers speaking the real worker protocol over real
 * WebSockets and participants' ComfyUI sockets open. Screenshots of the main views go to
 * test-artifacts/admin/.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import {
  API_TOKEN,
  ENV_WORKER_TOKEN,
  TestAgent,
  startControlPlane,
  until,
  type ControlPlane,
} from '../../test/support/worker-hub-kit.js';
import { HAS_CHROMIUM, launchChromium } from '../../test/support/chromium.js';
import {
  DASHBOARD_ARTIFACTS as ARTIFACTS,
  INSTRUCTOR_PASSWORD as PASSWORD,
  ensureDashboardBuilt,
  submitLogin,
} from '../../test/support/dashboard.js';
import type { Job } from '../store/types.js';

function prompt(ckpt: string, seed: number) {
  return {
    '4': { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: ckpt } },
    '5': { class_type: 'EmptyLatentImage', inputs: { width: 1024, height: 1024, batch_size: 1 } },
    '3': {
      class_type: 'KSampler',
      inputs: { seed, steps: 20, cfg: 7, model: ['4', 0], latent_image: ['5', 0] },
      _meta: { title: 'KSampler' },
    },
  };
}

const WORKFLOWS = [
  'Portrait SDXL',
  'Flux landscape',
  'Product shot',
  'Anime style',
  'Inpaint demo',
  'Upscale 4x',
];
const MODELS = ['sd_xl_base_1.0.safetensors', 'flux1-dev-fp8.safetensors', 'juggernautXL_v9.safetensors'];

describe.skipIf(!HAS_CHROMIUM)('instructor dashboard in Chromium', () => {
  let cp: ControlPlane;
  let browser: Browser;
  let page: Page;
  const agents: TestAgent[] = [];
  const sockets: WebSocket[] = [];
  const timers: NodeJS.Timeout[] = [];

  async function api(path: string, init: { method?: string; body?: unknown } = {}) {
    const res = await fetch(`${cp.url}${path}`, {
      method: init.method ?? 'GET',
      headers: { authorization: `Bearer ${API_TOKEN}`, 'content-type': 'application/json' },
      ...(init.body !== undefined ? { body: JSON.stringify(init.body) } : {}),
    });
    return { status: res.status, json: (await res.json()) as Record<string, unknown> };
  }

  async function submit(
    user: string,
    workflow: string,
    model: string,
    seed: number,
  ): Promise<{ id: string; number: number }> {
    const r = await api('/api/v1/jobs', {
      method: 'POST',
      body: { user, prompt: prompt(model, seed), metadata: { workflow } },
    });
    expect(r.status).toBe(201);
    return { id: r.json.id as string, number: r.json.number as number };
  }

  /** A GPU worker that takes one job at a time and reports it running at `step` of 20 in KSampler. */
  async function worker(
    name: string,
    gpu: string,
    vramTotal: number,
    vramFree: number,
    step: number,
  ): Promise<TestAgent> {
    const devices = [{ name: `cuda:0 ${gpu}`, type: 'cuda', vramTotal, vramFree }];
    const { agent } = await TestAgent.register(cp.wsUrl, ENV_WORKER_TOKEN, {
      name,
      prefetch: 0,
      devices,
      comfyuiVersion: '0.3.64',
      agentVersion: '0.1.0',
      warmModels: [`checkpoints/${MODELS[0]}`],
    });
    agents.push(agent);
    const running = new Map<string, number>();
    const onAssign = async () => {
      for (;;) {
        let msg;
        try {
          msg = await agent.next('assign', () => true, 600_000);
        } catch {
          return;
        }
        const { jobId, attempt } = msg.job;
        running.set(jobId, attempt);
        agent.send({ type: 'job_started', jobId, attempt });
        agent.send({
          type: 'job_event',
          jobId,
          attempt,
          event: { type: 'executing', data: { node: '3', prompt_id: jobId } },
        });
        agent.send({
          type: 'job_event',
          jobId,
          attempt,
          event: { type: 'progress', data: { value: step, max: 20, node: '3', prompt_id: jobId } },
        });
      }
    };
    void onAssign();
    const beat = setInterval(() => {
      if (agent.ws.readyState !== WebSocket.OPEN) return;
      agent.send({
        type: 'heartbeat',
        healthy: true,
        devices,
        inFlight: [...running].map(([jobId, attempt]) => ({ jobId, attempt, state: 'running' as const })),
      });
    }, 1000);
    timers.push(beat);
    return agent;
  }

  /** A participant's ComfyUI tab: their `/ws`, signed in with Basic. */
  async function participantTab(user: string): Promise<void> {
    const ws = new WebSocket(`${cp.url.replace('http', 'ws')}/${user}/ws?clientId=tab-${user}`, {
      headers: { authorization: `Basic ${Buffer.from(`${user}:pw-${user}-0123456789`).toString('base64')}` },
    });
    sockets.push(ws);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
  }

  /** Saves a screenshot (notices dismissed first, so they hide nothing). */
  async function shot(name: string, fullPage = false): Promise<void> {
    for (const close of await page.locator('.toast-close').all())
      await close.click({ timeout: 500 }).catch(() => {});
    await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage });
  }

  beforeAll(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    await ensureDashboardBuilt();
    cp = await startControlPlane({ MAX_RUNNING_PER_USER: '1', DASHBOARD_SAMPLE_SECONDS: '1' });
    const { accounts, queue } = cp.services;
    await accounts.create('teacher', 'instructor', PASSWORD);
    for (let i = 1; i <= 20; i++) {
      const u = `user${String(i).padStart(3, '0')}`;
      await accounts.create(u, 'participant', `pw-${u}-0123456789`);
    }

    // Some history: a finished job and one that failed in ComfyUI.
    await queue.enqueue({
      user: 'user002',
      prompt: prompt(MODELS[0]!, 1),
      metadata: { workflow: 'Portrait SDXL' },
    });
    const done = (await queue.claim('envgpu:warmup', [])) as Job;
    await queue.complete(done.id, done.attempts, []);
    await queue.enqueue({
      user: 'user007',
      prompt: prompt(MODELS[1]!, 2),
      metadata: { workflow: 'Flux landscape' },
    });
    const failed = (await queue.claim('envgpu:warmup', [])) as Job;
    await queue.fail(failed.id, failed.attempts, {
      reason: 'execution_error',
      message:
        'CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 23.65 GiB total capacity; 20.10 GiB already allocated)',
      nodeId: '3',
      nodeType: 'KSampler',
      exceptionType: 'torch.OutOfMemoryError',
    });

    await worker('gpu1', 'NVIDIA GeForce RTX 4090', 24 * 1024 ** 3, 9.5 * 1024 ** 3, 12);
    await worker('gpu2', 'NVIDIA RTX A6000', 48 * 1024 ** 3, 30 * 1024 ** 3, 4);

    for (let i = 1; i <= 10; i++) {
      const u = `user${String(i).padStart(3, '0')}`;
      await submit(u, WORKFLOWS[i % WORKFLOWS.length]!, MODELS[i % MODELS.length]!, i);
    }
    await submit('user001', 'Portrait SDXL (variation)', MODELS[0]!, 99);
    for (const u of [
      'user001',
      'user002',
      'user004',
      'user005',
      'user006',
      'user008',
      'user009',
      'user010',
      'user012',
    ]) {
      await participantTab(u);
    }
    await until(
      () => cp.services.workers.online().every((w) => w.held.size === 1),
      5000,
      'both workers busy',
    );

    browser = await launchChromium();
    const context = await browser.newContext({ viewport: { width: 1366, height: 768 }, locale: 'en-GB' });
    page = await context.newPage();
  }, 120_000);

  afterAll(async () => {
    for (const t of timers) clearInterval(t);
    for (const s of sockets) s.terminate();
    for (const a of agents) await a.close().catch(() => {});
    await browser?.close();
    await cp?.close();
  });

  it('says what to do when no GPU worker and no job is there yet', async () => {
    const empty = await startControlPlane({});
    try {
      await empty.services.accounts.create('teacher', 'instructor', PASSWORD);
      const ctx = await browser.newContext({ viewport: { width: 1366, height: 768 }, locale: 'en-GB' });
      const p = await ctx.newPage();
      await p.goto(`${empty.url}/login?next=/admin/`);
      await submitLogin(p);
      await p.getByText('No GPU worker is connected').waitFor();
      const gpus = (await p.locator('#gpus').textContent()) ?? '';
      expect(gpus).toContain(`comfy-multi worker --server ${empty.url} --token`);
      expect(await p.locator('#queue').textContent()).toContain('Nobody is waiting');
      expect(await p.locator('#participants').textContent()).toContain('comfy-multi users init --count 20');
      expect(await p.locator('footer').textContent()).toContain(
        'ComfyUI frontend: none yet: copied from the first GPU worker that connects',
      );
      await p.screenshot({ path: join(ARTIFACTS, '00-empty-state.png'), fullPage: true });
      await ctx.close();
    } finally {
      await empty.close();
    }
  }, 60_000);

  it('runs the workshop live: submit, move to front, cancel, worker lost, mode switch, audit', async () => {
    // Log in through the real login form; instructors land on the dashboard.
    await page.goto(`${cp.url}/admin/`);
    await expect.poll(() => page.url()).toContain('/login');
    await submitLogin(page);
    await page.waitForURL(`${cp.url}/admin/`);
    await page.getByText('Live', { exact: true }).waitFor();
    await page.locator('#queue tbody tr').first().waitFor();

    // Running jobs per worker, with progress and the current node.
    const gpu1 = page.locator('article[aria-label^="Worker gpu1"]');
    await expect.poll(() => gpu1.getAttribute('aria-label')).toBe('Worker gpu1, Busy');
    await expect.poll(() => gpu1.locator('[role=progressbar]').getAttribute('aria-valuenow')).toBe('12');
    expect(await gpu1.textContent()).toContain('KSampler');
    expect(await page.locator('#participants').textContent()).toContain('user012');
    await until(async () => (await page.locator('#charts .chart').count()) === 3, 10_000, 'charts');
    await shot('01-overview-1366x768');
    await shot('02-overview-full', true);

    // A job submitted for user003 appears without reloading.
    const navigations: string[] = [];
    page.on('framenavigated', (f) => navigations.push(f.url()));
    const demo = await submit('user003', 'Demo for user003', MODELS[2]!, 3003);
    const demoRow = page.locator('#queue tbody tr', { hasText: 'Demo for user003' });
    await demoRow.waitFor({ timeout: 3000 });
    expect(await demoRow.locator('td').first().textContent()).not.toBe('1');

    // Move it to the front (confirmed in a dialog).
    await demoRow.getByRole('button', { name: `Move job #${demo.number} of user003 to the front` }).click();
    const dialog = page.getByRole('dialog');
    await dialog.waitFor();
    expect(await dialog.textContent()).toContain(`Move job #${demo.number} of user003 to the front?`);
    // The least destructive choice has the focus.
    expect(await page.locator(':focus').textContent()).toBe('Keep as is');
    await shot('03-confirm-dialog');
    await dialog.getByRole('button', { name: 'Move to front' }).click();
    await expect
      .poll(() => page.locator('#queue tbody tr').first().textContent(), { timeout: 3000 })
      .toContain('Demo for user003');

    // Cancel another job (user005's).
    const other = page.locator('#queue tbody tr', { hasText: 'user005' });
    await other.getByRole('button', { name: /^Cancel job #\d+ of user005$/ }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Cancel the job' }).click();
    await expect.poll(() => other.count(), { timeout: 3000 }).toBe(0);
    const q = (await api('/api/v1/queue')).json as { counts: { cancelled: number } };
    expect(q.counts.cancelled).toBe(1);

    // A worker's connection dies: it shows offline within seconds.
    const killedAt = Date.now();
    await agents[0]!.terminate();
    await expect.poll(() => gpu1.getAttribute('aria-label'), { timeout: 5000 }).toBe('Worker gpu1, Offline');
    const offlineAfterMs = Date.now() - killedAt;
    expect(offlineAfterMs).toBeLessThan(5000);
    await page.locator('#gpus').getByText('Running without a worker').waitFor();

    // Switch the queue order.
    await page.getByRole('button', { name: 'First come, first served' }).click();
    await page
      .getByRole('dialog')
      .getByRole('button', { name: 'Switch to First come, first served' })
      .click();
    await expect
      .poll(() => page.getByRole('button', { name: 'First come, first served' }).getAttribute('aria-pressed'))
      .toBe('true');
    expect((await api('/api/v1/queue')).json.mode).toBe('fifo');

    // The audit log shows each action, with who did it.
    const activity = page.locator('#activity');
    await expect
      .poll(() => activity.textContent(), { timeout: 3000 })
      .toContain('switched the queue from Fair share to First come, first served');
    const log = (await activity.textContent()) ?? '';
    expect(log).toContain(`moved job #${demo.number} of user003 to the front`);
    expect(log).toMatch(/cancelled job #\d+ of user005/);
    expect(log).toContain('teacher');
    expect(navigations.filter((u) => u.includes('/admin/'))).toEqual([]); // never reloaded

    await page.locator('#activity').scrollIntoViewIfNeeded();
    await shot('04-after-actions-activity');
    await page.evaluate('window.scrollTo(0, 0)');
    await shot('05-after-actions-top');

    // Large text for the projector: one column, bigger everything.
    await page.getByRole('button', { name: 'Large text' }).click();
    await shot('06-large-text-1366x768');
    await shot('07-large-text-full', true);
    await page.getByRole('button', { name: 'Normal text' }).click();

    // Reset a participant's password: shown once, and it works.
    await page
      .locator('#participants tbody tr', { hasText: 'user011' })
      .getByRole('button', { name: 'Reset the password of user011' })
      .click();
    await page.getByRole('dialog').getByRole('button', { name: 'Reset password' }).click();
    const secret = page.getByRole('dialog', { name: 'New password of user011' }).locator('code');
    await secret.waitFor();
    const newPassword = ((await secret.textContent()) ?? '').trim();
    expect(newPassword.length).toBeGreaterThanOrEqual(8);
    await shot('09-password-shown-once');
    await page.getByRole('button', { name: 'Done — I have passed it on' }).click();
    const login = await fetch(`${cp.url}/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ user: 'user011', password: newPassword }),
    });
    expect(login.status).toBe(200);
    await expect.poll(() => activity.textContent()).toContain('reset the password of user011');
    expect(await activity.textContent()).not.toContain(newPassword);

    // Priority, per-user limits and draining, each through its dialog.
    const row4 = page.locator('#queue tbody tr', { hasText: 'user004' });
    await row4.getByRole('button', { name: /^Priority of job #\d+ of user004: normal\. Change$/ }).click();
    const prio = page.getByRole('dialog');
    await prio.getByLabel(/^High/).check();
    await shot('10-priority-dialog');
    await prio.getByRole('button', { name: 'Set priority' }).click();
    await expect.poll(() => row4.getByRole('button', { name: /Priority of/ }).textContent()).toBe('high');

    await page
      .getByRole('button', { name: /^Limits of user006: at most 10 waiting, 1 running\. Change$/ })
      .click();
    await page.getByRole('dialog').getByLabel('Most jobs waiting').fill('3');
    await page.getByRole('dialog').getByRole('button', { name: 'Save limits' }).click();
    await page.locator('#participants tbody tr', { hasText: 'user006' }).getByText('own limits').waitFor();
    expect((await cp.store.getSettings()).userLimits).toEqual({ user006: { maxPendingPerUser: 3 } });

    const gpu2 = page.locator('article[aria-label^="Worker gpu2"]');
    await gpu2.getByRole('button', { name: 'Drain worker gpu2' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Drain' }).click();
    await expect.poll(() => gpu2.getAttribute('aria-label')).toBe('Worker gpu2, Draining');
    await gpu2.getByRole('button', { name: 'Undrain worker gpu2' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Undrain' }).click();
    await expect.poll(() => gpu2.getAttribute('aria-label')).toBe('Worker gpu2, Busy');
    await expect.poll(() => activity.textContent()).toContain('undrained GPU worker gpu2');
    const all = (await activity.textContent()) ?? '';
    expect(all).toMatch(/set the priority of job #\d+ of user004 from normal to high/);
    expect(all).toContain('set the limits of user006 to 3 waiting');
    expect(all).toContain('drained GPU worker gpu2');

    // Keyboard: Escape closes a dialog and nothing happens.
    await page.getByRole('button', { name: 'Message everyone…' }).focus();
    await page.keyboard.press('Enter');
    await page.getByRole('dialog').waitFor();
    await page.keyboard.type('Break until 14:30 — the queue keeps running.');
    await shot('08-broadcast-dialog');
    // Focus stays inside the dialog however far one tabs.
    for (let i = 0; i < 7; i++) {
      await page.keyboard.press(i % 3 === 2 ? 'Shift+Tab' : 'Tab');
      expect(await page.locator('dialog :focus').count()).toBe(1);
    }
    await page.keyboard.press('Escape');
    await expect.poll(() => page.getByRole('dialog').count()).toBe(0);
    expect((await cp.services.broadcast.get())?.message ?? null).toBeNull();
  }, 120_000);
});
