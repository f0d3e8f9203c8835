/**
 * GPUs on demand, end to end with the `local` provider: a control plane (in process, listening),
 * `comfy-multi worker` child processes started by the autoscaler, and a ComfyUI stand-in (or the
 * real ComfyUI at COMFYUI_URL, unchanged). A job queued into a cold system starts a worker, runs,
 * and the worker is stopped once idle; a start that fails leaves the job waiting and alerts.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { startHarness, type Harness } from '../support/app-harness.js';
import { startStandin, type Standin } from '../support/comfyui-standin/server.js';
import { modelFreePrompt } from '../support/prompts.js';
import { waitFor } from '../support/processes.js';
import { freePort } from '../support/redis-server.js';
import type { AutoscaleView } from '../../src/autoscale/view.js';

const REAL_COMFYUI = process.env.COMFYUI_URL?.replace(/\/+$/, '') || null;
const TOKEN = 'autoscale-e2e-token';

let h: Harness | undefined;
let standin: Standin | undefined;

afterEach(async () => {
  await h?.close();
  h = undefined;
  await standin?.close();
  standin = undefined;
});

async function system(extra: Record<string, string>): Promise<{ admin: string }> {
  const port = await freePort();
  let comfyui = REAL_COMFYUI;
  if (!comfyui) {
    standin = await startStandin();
    comfyui = standin.url;
  }
  h = await startHarness({
    PORT: String(port),
    WORKER_TOKENS: `auto:${TOKEN}`,
    AUTOSCALE_PROVIDER: 'local',
    AUTOSCALE_WORKER_TOKEN: TOKEN,
    AUTOSCALE_LOCAL_COMFYUI_URLS: comfyui,
    // The CLI from source: the test needs no build.
    AUTOSCALE_LOCAL_COMMAND: `${process.execPath} --import tsx src/cli/index.ts`,
    AUTOSCALE_SERVER_URL: `http://127.0.0.1:${port}`,
    AUTOSCALE_INTERVAL_SECONDS: '1',
    AUTOSCALE_IDLE_SECONDS: '2',
    AUTOSCALE_UP_COOLDOWN_SECONDS: '2',
    AUTOSCALE_DOWN_COOLDOWN_SECONDS: '0',
    FRONTEND_MIRROR: 'false',
    ...extra,
  });
  await h.app.listen({ port, host: '127.0.0.1' });
  return { admin: await h.addUser('teacher', 'instructor') };
}

async function view(admin: string): Promise<AutoscaleView & { enabled: boolean }> {
  const r = await h!.app.inject({
    method: 'GET',
    url: '/api/v1/autoscale',
    headers: { authorization: admin },
  });
  expect(r.statusCode).toBe(200);
  return r.json();
}

async function submit(admin: string): Promise<string> {
  const r = await h!.app.inject({
    method: 'POST',
    url: '/api/v1/jobs',
    headers: { authorization: admin },
    payload: { user: 'teacher', prompt: modelFreePrompt({ color: Math.floor(Math.random() * 0xffffff) }) },
  });
  expect(r.statusCode, r.body).toBe(201);
  return (r.json() as { id: string }).id;
}

describe('autoscale with the local provider', () => {
  it('a job queued into a cold system starts a worker, completes, and the idle worker is stopped', async () => {
    const { admin } = await system({});
    expect((await view(admin)).instances).toEqual([]);
    const jobId = await submit(admin);

    // A GPU is on its way; before any start was measured there is no number, not a guess.
    const starting = await waitFor(
      async () => {
        const v = await view(admin);
        return v.starting ? v : null;
      },
      10_000,
      'a GPU starting',
    );
    expect(starting.starting).toEqual({ etaSeconds: null });

    const done = await waitFor(
      async () => {
        const job = await h!.services.queue.store.getJob(jobId);
        return job?.status === 'completed' ? job : null;
      },
      90_000,
      'the job to complete',
    );
    expect(done.outputs.length).toBeGreaterThan(0);
    const worker = h!.services.workers.list().find((w) => w.ephemeral?.provider === 'local');
    expect(worker?.ephemeral?.instance).toBe(worker?.name);

    // Idle for 2 s → stopped → its process ends → forgotten, with its billed time kept.
    const after = await waitFor(
      async () => {
        const v = await view(admin);
        return v.instances.length === 0 && v.decisions.some((d) => d.action === 'gone') ? v : null;
      },
      60_000,
      'the idle worker to be stopped and gone',
    );
    const actions = after.decisions.map((d) => d.action).reverse();
    expect(actions).toEqual(expect.arrayContaining(['start', 'ready', 'stop', 'gone']));
    expect(after.decisions.find((d) => d.action === 'stop')!.reason).toMatch(/^idle for \d+ s$/);
    expect(after.startsMeasured).toBe(1);
    expect(after.startEstimateSeconds).not.toBeNull();
    expect(after.usage.todaySeconds).toBeGreaterThan(0);

    const metrics = await h!.app.inject({ method: 'GET', url: '/metrics' });
    expect(metrics.body).toMatch(/comfy_multi_autoscale_gpu_seconds_today [1-9]/);
    expect(metrics.body).toMatch(/comfy_multi_autoscale_decisions_total\{action="start"\} 1/);
  }, 150_000);

  it('a start that fails leaves the job waiting (never failed) and alerts the instructor', async () => {
    // An "agent" that exits at once: the instance ends before a worker ever registers.
    const { admin } = await system({ AUTOSCALE_LOCAL_COMMAND: `${process.execPath} -e process.exit(3)` });
    const jobId = await submit(admin);
    const v = await waitFor(
      async () => {
        const x = await view(admin);
        return x.decisions.filter((d) => d.action === 'start_failed').length >= 2 ? x : null;
      },
      30_000,
      'two failed starts',
    );
    expect(v.decisions.find((d) => d.action === 'start_failed')!.reason).toBe(
      'the instance ended before its worker registered',
    );
    const job = await h!.services.queue.store.getJob(jobId);
    expect(job?.status).toBe('pending');
    // The instructor's alert (webhook when configured; the dashboard's recent alerts always).
    const alert = h!.app.admin.alerts.recent().find((a) => a.event === 'gpu_start_failed');
    expect(alert?.message).toMatch(
      /^local: the instance ended before its worker registered\. Waiting jobs stay queued/,
    );
  }, 60_000);

  it('the instructor can stop everything and hold GPUs warm (audited)', async () => {
    const { admin } = await system({ AUTOSCALE_DRY_RUN: 'true' });
    const post = (url: string, payload: unknown) =>
      h!.app.inject({ method: 'POST', url, headers: { authorization: admin }, payload: payload as object });
    expect((await post('/api/v1/autoscale/hold', { count: 2, minutes: 60 })).json().hold.count).toBe(2);
    const v = await waitFor(
      async () => {
        const x = await view(admin);
        return x.decisions.some((d) => d.action === 'start' && /dry run/.test(d.reason)) ? x : null;
      },
      10_000,
      'a dry-run start',
    );
    expect(v.instances).toEqual([]); // dry run: nothing started
    expect(v.decisions.find((d) => d.action === 'start')!.reason).toMatch(
      /^instructor hold: 2 warm \(dry run: local: /,
    );
    expect((await post('/api/v1/autoscale/stop-all', { on: true })).json().stopAll).toBe(true);
    expect((await post('/api/v1/autoscale/hold', { count: -1, minutes: 5 })).statusCode).toBe(400);
    // The dashboard's buttons: a signed-in instructor with the CSRF token; refused without it.
    const login = await h!.app.inject({
      method: 'POST',
      url: '/login',
      payload: { user: 'teacher', password: 'pw-teacher-0123456789' },
    });
    const cookie = login.cookies.find((c) => c.name === 'cm_session')!.value;
    const me = (await h!.app.inject({ url: '/admin/api/me', cookies: { cm_session: cookie } })).json();
    const dash = (headers: Record<string, string>) =>
      h!.app.inject({
        method: 'POST',
        url: '/admin/api/autoscale/stop-all',
        cookies: { cm_session: cookie },
        headers,
        payload: { on: false },
      });
    expect((await dash({})).statusCode).toBe(403);
    const resumed = await dash({ [me.csrfHeader]: me.csrfToken });
    expect(resumed.statusCode).toBe(200);
    expect(resumed.json().stopAll).toBe(false);
    const live = await h!.app.admin.live.snapshot();
    expect(live.autoscale?.decisions[0]?.reason).toBe('instructor: autoscaling resumed');
    const audit = await h!.services.audit.recent(10);
    expect(audit.map((a) => a.action)).toEqual(
      expect.arrayContaining(['autoscale.hold', 'autoscale.stop_all']),
    );
  }, 30_000);
});
