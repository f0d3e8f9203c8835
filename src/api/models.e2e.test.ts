/**
 * Model downloads onto workers, end to end: `POST /api/v1/models/downloads` on a real control
 * plane, a real worker agent (with `modelsDir`) beside the ComfyUI stand-in (which lists that
 * models folder like ComfyUI), and a local HTTP server serving generated files — whole, cut
 * half-way, with wrong bytes, slowly, or 404.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startTestAgent, startTestGpu, type TestGpu } from '../../test/support/agent.js';
import { startStandin } from '../../test/support/comfyui-standin/server.js';
import { startModelServer, type ModelServer } from '../../test/support/model-server.js';
import { modelFreePrompt } from '../../test/support/prompts.js';
import type { ModelDownloadView } from '../admin/view-types.js';
import { getCurrentEnv } from '../dispatch/env-snapshots.js';
import { listen, startHarness, type Harness } from '../../test/support/gateway-kit.js';
import { downloadBodySchema } from './models-routes.js';
import { waitFor } from '../../test/support/processes.js';

const TOKEN = 'models-e2e-worker-token-0123456789';
const HF_TOKEN = 'hf_do_not_show_this_0123456789';

let h: Harness;
let gpu: TestGpu | undefined;
let files: ModelServer;
let modelsDir: string;
let teacher: string;
/** What the agent's injected free-space function answers; null: the real disk. */
let fakeFree: number | null = null;

async function call(method: string, url: string, payload?: unknown) {
  return h.app.inject({
    method: method as 'GET',
    url,
    headers: {
      authorization: teacher,
      ...(payload !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    ...(payload !== undefined ? { payload: JSON.stringify(payload) } : {}),
  });
}

async function startDownload(body: Record<string, unknown>): Promise<ModelDownloadView> {
  const r = await call('POST', '/api/v1/models/downloads', body);
  expect(r.statusCode, r.body).toBe(202);
  const downloads = r.json().downloads as ModelDownloadView[];
  expect(downloads).toHaveLength(1);
  return downloads[0]!;
}

async function ended(id: string): Promise<ModelDownloadView> {
  let view: ModelDownloadView | undefined;
  await waitFor(
    async () => {
      const list = (await call('GET', '/api/v1/models/downloads')).json().downloads as ModelDownloadView[];
      view = list.find((d) => d.id === id);
      return view !== undefined && ['done', 'failed', 'cancelled'].includes(view.state);
    },
    60_000,
    `download ${id} to end`,
  );
  return view!;
}

const checkpointPrompt = (name: string) => ({
  '1': { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: name } },
  '2': { class_type: 'PreviewAny', inputs: { source: ['1', 0] } },
});

const partials = () =>
  readdirSync(join(modelsDir, '.comfy-multi-downloads')).filter((f) => !f.startsWith('.'));

beforeAll(async () => {
  modelsDir = await mkdtemp(join(tmpdir(), 'cm-models-e2e-'));
  files = await startModelServer({ slowChunk: 16_384, slowPauseMs: 25 });
  h = await startHarness({ WORKER_TOKENS: `gpu:${TOKEN}`, MODEL_DOWNLOADS_ALLOW_LOCAL_HTTP: 'true' });
  teacher = await h.addUser('teacher', 'instructor');
  await h.addUser('user001');
  const base = await listen(h);
  gpu = await startTestGpu(h, {
    serverUrl: base,
    token: TOKEN,
    name: 'gpu-models',
    standin: { modelsDir },
    agent: {
      modelsDir,
      modelProgressMs: 50,
      modelRetryDelayMs: 20,
      freeDiskBytes: async () => fakeFree ?? Number.MAX_SAFE_INTEGER,
    },
  });
}, 90_000);

afterAll(async () => {
  await gpu?.stop();
  await h?.close();
  await files?.close();
  await rm(modelsDir, { recursive: true, force: true });
});

beforeEach(() => {
  fakeFree = null;
});

describe('POST /api/v1/models/downloads', () => {
  it('downloads onto the worker with live progress; ComfyUI, the env snapshot and the submit check then know the file', async () => {
    const f = files.add('/acme/flux/resolve/main/fresh.safetensors', 600_000, 'slow');
    // Before: no worker has it, so a prompt naming it is refused at submit.
    const before = await call('POST', '/api/v1/jobs', {
      user: 'user001',
      prompt: checkpointPrompt('fresh.safetensors'),
    });
    expect(before.statusCode).toBe(400);

    const seen: ModelDownloadView[] = [];
    const onChange = () =>
      seen.push(...h.services.models.list().filter((d) => d.filename === 'fresh.safetensors'));
    h.services.models.on('change', onChange);
    const d = await startDownload({
      url: `${files.url}/acme/flux/resolve/main/fresh.safetensors`,
      folder: 'checkpoints',
      sha256: f.sha256.toUpperCase(), // any case
      token: HF_TOKEN,
    });
    expect(d).toMatchObject({
      workerId: 'gpu:gpu-models',
      folder: 'checkpoints',
      filename: 'fresh.safetensors',
      withToken: true,
    });
    const done = await ended(d.id);
    h.services.models.off('change', onChange);
    expect(done).toMatchObject({
      state: 'done',
      received: 600_000,
      total: 600_000,
      sha256: f.sha256,
      error: null,
    });

    // Progress arrived while bytes flowed, throttled but live.
    const progress = seen.filter((v) => v.state === 'downloading').map((v) => v.received);
    expect(new Set(progress).size).toBeGreaterThan(2);
    expect(progress.some((n) => n > 0 && n < 600_000)).toBe(true);

    expect(readFileSync(join(modelsDir, 'checkpoints', 'fresh.safetensors')).equals(f.bytes)).toBe(true);
    expect(partials()).toEqual([]);
    expect(
      files.requests.filter((r) => r.path.endsWith('fresh.safetensors')).map((r) => r.authorization),
    ).toEqual([`Bearer ${HF_TOKEN}`]);
    // The worker re-sent its environment before reporting done.
    expect((await getCurrentEnv(h.services.store))!.snapshot.models.checkpoints).toContain(
      'fresh.safetensors',
    );
    const after = await call('POST', '/api/v1/jobs', {
      user: 'user001',
      prompt: checkpointPrompt('fresh.safetensors'),
    });
    expect(after.statusCode, after.body).toBe(201);
    await call('DELETE', `/api/v1/jobs/${after.json().id as string}`);

    // The token is never shown back: not in the list, not in the audit log, not in the dashboard.
    const list = (await call('GET', '/api/v1/models/downloads')).body;
    expect(list).not.toContain(HF_TOKEN);
    const audit = await h.services.audit.recent(20);
    const entry = audit.find((e) => e.action === 'model.download');
    expect(entry).toMatchObject({
      ok: true,
      target: 'checkpoints/fresh.safetensors',
      details: { withToken: true },
    });
    expect(JSON.stringify(audit)).not.toContain(HF_TOKEN);
    expect(JSON.stringify(await h.app.admin.state.compute('downloads'))).not.toContain(HF_TOKEN);
    expect((await h.app.admin.state.compute('downloads')).find((x) => x.id === d.id)?.state).toBe('done');
  }, 90_000);

  it('resumes after the connection is cut half-way', async () => {
    const f = files.add('/cut/model.safetensors', 800_000, 'cut');
    const d = await startDownload({
      url: `${files.url}/cut/model.safetensors`,
      folder: 'loras',
      sha256: f.sha256,
    });
    expect(d.filename).toBe('model.safetensors');
    expect(await ended(d.id)).toMatchObject({ state: 'done', sha256: f.sha256 });
    const ranges = files.requests.filter((r) => r.path === '/cut/model.safetensors').map((r) => r.range);
    expect(ranges).toHaveLength(2);
    expect(ranges[0]).toBeNull();
    expect(ranges[1]).toMatch(/^bytes=[1-9]\d*-$/);
    expect(readFileSync(join(modelsDir, 'loras', 'model.safetensors')).equals(f.bytes)).toBe(true);
  }, 90_000);

  it('refuses a file with the wrong sha256: nothing lands, one clear error', async () => {
    const f = files.add('/wrong/vae.safetensors', 300_000, 'wrong');
    const d = await startDownload({
      url: `${files.url}/wrong/vae.safetensors`,
      folder: 'vae',
      sha256: f.sha256,
    });
    const v = await ended(d.id);
    expect(v.state).toBe('failed');
    expect(v.error?.code).toBe('checksum_mismatch');
    expect(v.error?.message).toMatch(
      /has sha256 [0-9a-f]{64}, not the expected [0-9a-f]{64}; it was deleted\.$/,
    );
    expect(existsSync(join(modelsDir, 'vae', 'vae.safetensors'))).toBe(false);
    expect(partials()).toEqual([]);
    expect((await getCurrentEnv(h.services.store))!.snapshot.models.vae ?? []).not.toContain(
      'vae.safetensors',
    );
  }, 90_000);

  it('a URL that 404s gives one clear error', async () => {
    const d = await startDownload({
      url: `${files.url}/missing/x.safetensors?download=true`,
      folder: 'text_encoders',
    });
    const v = await ended(d.id);
    expect(v).toMatchObject({
      state: 'failed',
      url: `${files.url}/missing/x.safetensors`,
      error: {
        code: 'http_404',
        message: `${files.url}/missing/x.safetensors answered 404 Not Found: check the URL.`,
      },
    });
  }, 60_000);

  it('checks the disk first: too little space fails before anything is written', async () => {
    fakeFree = 900;
    files.add('/big/unet.safetensors', 400_000);
    const d = await startDownload({ url: `${files.url}/big/unet.safetensors`, folder: 'diffusion_models' });
    const v = await ended(d.id);
    expect(v.state).toBe('failed');
    expect(v.error).toEqual({
      code: 'disk_full',
      message: `Not enough disk space for ${files.url}/big/unet.safetensors: it needs 400.0 KB more, the models disk has 900 B free.`,
    });
    expect(existsSync(join(modelsDir, 'diffusion_models', 'unet.safetensors'))).toBe(false);
  }, 60_000);

  it('cancels from the API: the partial file is deleted and nothing lands', async () => {
    files.add('/slow/big.safetensors', 5_000_000, 'slow');
    const d = await startDownload({ url: `${files.url}/slow/big.safetensors`, folder: 'checkpoints' });
    await waitFor(() => (h.services.models.get(d.id)?.received ?? 0) > 0, 30_000, 'bytes to flow');
    const r = await call('DELETE', `/api/v1/models/downloads/${d.id}`);
    expect(r.statusCode).toBe(200);
    expect(r.json()).toMatchObject({ id: d.id, cancelRequested: true });
    expect((await ended(d.id)).state).toBe('cancelled');
    expect(existsSync(join(modelsDir, 'checkpoints', 'big.safetensors'))).toBe(false);
    expect(partials()).toEqual([]);
    const again = await call('DELETE', `/api/v1/models/downloads/${d.id}`);
    expect(again.statusCode).toBe(409);
    expect(again.json().error.code).toBe('CONFLICT');
    const audit = await h.services.audit.recent(5);
    expect(audit.some((e) => e.action === 'model.cancel' && e.target === d.id && e.ok)).toBe(true);
  }, 60_000);

  it('a worker that restarts mid-download is asked again and resumes from its partial file', async () => {
    const f = files.add('/restart/big.safetensors', 3_000_000, 'slow');
    const dir2 = await mkdtemp(join(tmpdir(), 'cm-models-e2e-r-'));
    const standin2 = await startStandin({ modelsDir: dir2 });
    const base = `http://127.0.0.1:${(h.app.server.address() as { port: number }).port}`;
    const start = () =>
      startTestAgent({
        serverUrl: base,
        token: TOKEN,
        comfyuiUrl: standin2.url,
        name: 'gpu-restart',
        modelsDir: dir2,
        modelProgressMs: 50,
      });
    let a2 = start();
    try {
      await waitFor(
        () =>
          h.services.workers.get('gpu:gpu-restart')?.link !== null &&
          h.services.models.capableWorkers().some((w) => w.id === 'gpu:gpu-restart'),
        30_000,
        'the worker to register',
      );
      const d = await startDownload({
        url: `${files.url}/restart/big.safetensors`,
        folder: 'checkpoints',
        sha256: f.sha256,
        workers: ['gpu:gpu-restart'],
      });
      await waitFor(() => (h.services.models.get(d.id)?.received ?? 0) > 200_000, 30_000, 'bytes to flow');
      await a2.stop();
      a2 = start();
      const v = await ended(d.id);
      expect(v).toMatchObject({ state: 'done', sha256: f.sha256 });
      const ranges = files.requests.filter((r) => r.path === '/restart/big.safetensors').map((r) => r.range);
      expect(ranges[0]).toBeNull();
      expect(ranges.at(-1)).toMatch(/^bytes=[1-9]\d*-$/);
      expect(readFileSync(join(dir2, 'checkpoints', 'big.safetensors')).equals(f.bytes)).toBe(true);
    } finally {
      await a2.stop();
      await standin2.close();
      await rm(dir2, { recursive: true, force: true });
    }
  }, 90_000);

  it('refuses bad input with VALIDATION_FAILED, unknown ids and workers with their own codes', async () => {
    const bad = async (body: Record<string, unknown>) => {
      const r = await call('POST', '/api/v1/models/downloads', body);
      expect(r.statusCode, JSON.stringify(body)).toBe(400);
      expect(r.json().error.code).toBe('VALIDATION_FAILED');
    };
    const url = `${files.url}/a/b.safetensors`;
    await bad({ url: 'ftp://example.org/x.safetensors', folder: 'checkpoints' });
    await bad({ url: 'http://example.org/x.safetensors', folder: 'checkpoints' }); // http only to 127.0.0.1
    await bad({ url: 'https://user:pw@example.org/x.safetensors', folder: 'checkpoints' });
    await bad({ url, folder: 'custom_nodes' });
    await bad({ url, folder: 'checkpoints', filename: '../evil.safetensors' });
    await bad({ url, folder: 'checkpoints', filename: 'sub/x.safetensors' });
    await bad({ url, folder: 'checkpoints', filename: '.hidden' });
    await bad({ url, folder: 'checkpoints', sha256: 'abc' });
    await bad({ url: `${files.url}/a/`, folder: 'checkpoints' }); // no file name in the URL
    await bad({ url, folder: 'checkpoints', extra: 1 });

    const noWorker = await call('POST', '/api/v1/models/downloads', {
      url,
      folder: 'checkpoints',
      workers: ['gpu:nope'],
    });
    expect(noWorker.statusCode).toBe(404);
    expect(noWorker.json().error.code).toBe('WORKER_NOT_FOUND');
    const unknown = await call('DELETE', '/api/v1/models/downloads/nope');
    expect(unknown.statusCode).toBe(404);
    expect(unknown.json().error.code).toBe('MODEL_DOWNLOAD_NOT_FOUND');
  });

  it('plain http is refused without MODEL_DOWNLOADS_ALLOW_LOCAL_HTTP, even to 127.0.0.1', () => {
    const strict = downloadBodySchema(false);
    expect(strict.safeParse({ url: 'http://127.0.0.1:1/x.safetensors', folder: 'vae' }).success).toBe(false);
    expect(
      strict.safeParse({ url: 'https://huggingface.co/a/b/resolve/main/x.safetensors', folder: 'vae' }).data,
    ).toMatchObject({ filename: 'x.safetensors', workers: 'all' });
  });
});

describe('the workshop model list', () => {
  it('is stored without showing tokens back, and validated', async () => {
    const put = await call('PUT', '/api/v1/models/workshop', {
      models: [{ url: `${files.url}/ws/a.safetensors?sig=x`, folder: 'loras', token: HF_TOKEN }],
    });
    expect(put.statusCode, put.body).toBe(200);
    const got = await call('GET', '/api/v1/models/workshop');
    expect(got.json()).toEqual({
      models: [
        {
          url: `${files.url}/ws/a.safetensors`,
          folder: 'loras',
          filename: 'a.safetensors',
          sha256: null,
          withToken: true,
        },
      ],
    });
    expect(got.body).not.toContain(HF_TOKEN);
    const dup = await call('PUT', '/api/v1/models/workshop', {
      models: [
        { url: `${files.url}/ws/a.safetensors`, folder: 'loras' },
        { url: `${files.url}/other/a.safetensors`, folder: 'loras' },
      ],
    });
    expect(dup.statusCode).toBe(400);
    expect((await call('PUT', '/api/v1/models/workshop', { models: [] })).statusCode).toBe(200);
    const audit = await h.services.audit.recent(5);
    expect(audit.find((e) => e.action === 'model.workshop')?.ok).toBe(true);
    expect(JSON.stringify(audit)).not.toContain(HF_TOKEN);
  });

  it('a worker that registers without some of them fetches them before it takes a job', async () => {
    const f = files.add('/ws/needed.safetensors', 400_000, 'slow');
    const put = await call('PUT', '/api/v1/models/workshop', {
      models: [
        { url: `${files.url}/ws/needed.safetensors`, folder: 'text_encoders', sha256: f.sha256 },
        // Already on the first worker (an earlier test); the new one has its own empty folder.
        { url: `${files.url}/acme/flux/resolve/main/fresh.safetensors`, folder: 'checkpoints' },
      ],
    });
    expect(put.statusCode, put.body).toBe(200);
    files.add('/acme/flux/resolve/main/fresh.safetensors', 1000);
    // Only the new worker may take the job.
    expect((await call('POST', '/api/v1/workers/gpu:gpu-models/drain', { draining: true })).statusCode).toBe(
      200,
    );
    const dir2 = await mkdtemp(join(tmpdir(), 'cm-models-e2e-2-'));
    const standin2 = await startStandin({ modelsDir: dir2 });
    const agent2 = startTestAgent({
      serverUrl: `http://127.0.0.1:${(h.app.server.address() as { port: number }).port}`,
      token: TOKEN,
      comfyuiUrl: standin2.url,
      name: 'gpu-new',
      modelsDir: dir2,
      modelProgressMs: 50,
    });
    try {
      const job = await call('POST', '/api/v1/jobs', { user: 'user001', prompt: modelFreePrompt() });
      expect(job.statusCode, job.body).toBe(201);
      const jobId = job.json().id as string;
      await waitFor(
        () => h.services.workers.get('gpu:gpu-new')?.preparing === true,
        30_000,
        'the new worker to prepare',
      );
      const mine = () => h.services.models.list().filter((d) => d.workerId === 'gpu:gpu-new');
      expect(
        mine()
          .map((d) => `${d.folder}/${d.filename}`)
          .sort(),
      ).toEqual(['checkpoints/fresh.safetensors', 'text_encoders/needed.safetensors']);
      expect(mine().every((d) => d.by === 'workshop')).toBe(true);
      // While it fetches, the job waits although the worker is connected and idle.
      await waitFor(() => mine().some((d) => d.state === 'downloading'), 30_000, 'bytes to flow');
      expect((await h.services.store.getJob(jobId))!.status).toBe('pending');
      expect((await call('GET', '/api/v1/workers/gpu:gpu-new')).json()).toMatchObject({ preparing: true });
      // Then it runs there.
      await waitFor(
        async () => (await h.services.store.getJob(jobId))!.status === 'completed',
        60_000,
        'the job to run on the new worker',
      );
      expect(mine().every((d) => d.state === 'done')).toBe(true);
      expect((await h.services.store.getJob(jobId))!.workerId).toBe('gpu:gpu-new');
      expect(existsSync(join(dir2, 'text_encoders', 'needed.safetensors'))).toBe(true);
      expect(h.services.workers.get('gpu:gpu-new')?.preparing).toBe(false);
    } finally {
      await agent2.stop();
      await standin2.close();
      await rm(dir2, { recursive: true, force: true });
      await call('PUT', '/api/v1/models/workshop', { models: [] });
      await call('POST', '/api/v1/workers/gpu:gpu-models/drain', { draining: false });
    }
  }, 120_000);
});
