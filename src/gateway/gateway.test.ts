import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { modelFreePrompt } from '../../test/support/prompts.js';
import type { JobOutput } from '../store/types.js';
import {
  readZip,
  runJobAsWorker,
  startHarness,
  storeWorkerOutput,
  tinyPng,
  upload,
  uploadEnv,
  type Harness,
} from '../../test/support/gateway-kit.js';

let h: Harness;
let alice: string;

beforeEach(async () => {
  h = await startHarness();
  alice = await h.addUser('user001');
});
afterEach(async () => {
  await h.close();
});

const get = (url: string, auth = alice) =>
  h.app.inject({ method: 'GET', url, headers: { authorization: auth } });
const post = (url: string, body: unknown, auth = alice, headers: Record<string, string> = {}) =>
  h.app.inject({
    method: 'POST',
    url,
    headers: { authorization: auth, 'content-type': 'application/json', ...headers },
    payload: typeof body === 'string' ? body : JSON.stringify(body),
  });

describe('access', () => {
  it('asks for credentials, redirects /<user> and answers both /x and /api/x', async () => {
    expect((await h.app.inject({ method: 'GET', url: '/user001/api/prompt' })).statusCode).toBe(401);
    const r = await get('/user001');
    expect(r.statusCode).toBe(302);
    expect(r.headers.location).toBe('/user001/');
    const a = await get('/user001/prompt');
    const b = await get('/user001/api/prompt');
    expect(a.json()).toEqual({ exec_info: { queue_remaining: 0 } });
    expect(b.json()).toEqual(a.json());
  });

  it('keeps participants out of other spaces and lets instructors in', async () => {
    await h.addUser('user002');
    const teacher = await h.addUser('teacher', 'instructor');
    expect((await get('/user002/api/prompt')).statusCode).toBe(403);
    expect((await get('/nosuchuser/api/prompt')).statusCode).toBe(403);
    expect((await get('/user002/api/prompt', teacher)).statusCode).toBe(200);
    expect((await get('/nosuchuser/api/prompt', teacher)).statusCode).toBe(404);
    // Paths that cannot be a user's space at all are plain 404s, even without credentials.
    expect((await h.app.inject({ method: 'GET', url: '/favicon.ico' })).statusCode).toBe(404);
  });
});

describe('environment answers', () => {
  it('are empty but valid, with a hint, before any worker uploaded a snapshot', async () => {
    const oi = await get('/user001/api/object_info');
    expect(oi.statusCode).toBe(200);
    expect(oi.json()).toEqual({});
    expect(oi.headers['x-comfy-multi-hint']).toMatch(/No GPU worker/);
    const stats = (await get('/user001/api/system_stats')).json();
    expect(stats.system.comfyui_version).toBe('unknown');
    expect(stats.devices).toEqual([]);
    expect((await get('/user001/api/embeddings')).json()).toEqual([]);
    expect((await get('/user001/api/models')).json()).toEqual([]);
    expect((await get('/user001/api/extensions')).json()).toEqual(['/extensions/comfy-multi/workshop.js']);
  });

  it("come from the stored snapshot, with the user's own files in LoadImage", async () => {
    await uploadEnv(h);
    await upload(
      h.app,
      alice,
      '/user001/api/upload/image',
      { type: 'input' },
      { name: 'cat.png', body: tinyPng() },
    );
    const oi = (await get('/user001/api/object_info')).json();
    expect(Object.keys(oi).length).toBeGreaterThan(300);
    expect(oi.LoadImage.input.required.image[0]).toEqual(['cat.png']);
    expect(oi.LoadImage.input.required.image[1]).toEqual({ image_upload: true });
    const one = (await get('/user001/api/object_info/LoadImage')).json();
    expect(one.LoadImage.input.required.image[0]).toEqual(['cat.png']);
    expect((await get('/user001/api/object_info/NoSuchNode')).json()).toEqual({});
    expect((await get('/user001/api/models')).json()).toEqual([
      'checkpoints',
      'loras',
      'configs',
      'custom_nodes',
    ]);
    expect((await get('/user001/api/models/checkpoints')).json()).toEqual(['sd15.safetensors']);
    expect((await get('/user001/api/models/nope')).statusCode).toBe(404);
    expect((await get('/user001/api/experiment/models')).json()).toEqual([
      { name: 'checkpoints', folders: [] },
      { name: 'loras', folders: [] },
    ]);
    expect((await get('/user001/api/experiment/models/checkpoints')).json()).toEqual([
      { name: 'sd15.safetensors', pathIndex: 0 },
    ]);
    expect((await get('/user001/api/embeddings')).json()).toEqual(['easynegative']);
    expect((await get('/user001/api/extensions')).json()).toEqual([
      '/extensions/core/example.js',
      '/extensions/comfy-multi/workshop.js',
    ]);
    expect((await get('/user001/api/system_stats')).json().system.comfyui_version).toBe('0.3.64');
    const features = (await get('/user001/api/features')).json();
    expect(features.supports_preview_metadata).toBe(true);
    expect(features.max_upload_size).toBe(h.config.UPLOAD_LIMIT);
    expect((await get('/user001/api/users')).json()).toEqual({ storage: 'server', migrated: true });
    expect((await get('/user001/api/i18n')).json()).toEqual({});
    expect((await get('/user001/api/global_subgraphs')).json()).toEqual({});
    expect((await get('/user001/api/node_replacements')).json()).toEqual({});
    expect((await get('/user001/api/workflow_templates')).json()).toEqual({});
    const js = await get('/user001/extensions/comfy-multi/workshop.js');
    expect(js.headers['content-type']).toMatch(/javascript/);
    expect(js.body).toContain('registerExtension');
  });
});

describe('settings and userdata', () => {
  it('stores settings like ComfyUI', async () => {
    expect((await get('/user001/api/settings')).json()).toEqual({});
    expect((await post('/user001/api/settings', { 'Comfy.A': 1, 'Comfy.B': 'x' })).statusCode).toBe(200);
    expect((await post('/user001/api/settings/Comfy.C', [1, 2])).statusCode).toBe(200);
    // The frontend posts JSON without a JSON content type.
    expect(
      (
        await post('/user001/api/settings/Comfy.D', 'true', alice, {
          'content-type': 'text/plain;charset=UTF-8',
        })
      ).statusCode,
    ).toBe(200);
    expect((await get('/user001/api/settings')).json()).toEqual({
      'Comfy.A': 1,
      'Comfy.B': 'x',
      'Comfy.C': [1, 2],
      'Comfy.D': true,
    });
    expect((await get('/user001/api/settings/Comfy.C')).json()).toEqual([1, 2]);
    expect((await get('/user001/api/settings/Nope')).body).toBe('null');
  });

  it('lists, reads, writes, moves and deletes userdata files', async () => {
    const wf = { last_node_id: 0, nodes: [] };
    expect((await get('/user001/api/userdata?dir=workflows')).statusCode).toBe(404);
    const saved = await post('/user001/api/userdata/workflows%2Fa.json', wf, alice, {
      'content-type': 'text/plain;charset=UTF-8',
    });
    expect(saved.statusCode).toBe(200);
    expect(saved.json()).toBe('workflows/a.json');
    expect((await get('/user001/api/userdata?dir=workflows')).json()).toEqual(['a.json']);
    const full = (
      await get('/user001/api/userdata?dir=workflows&recurse=true&split=false&full_info=true')
    ).json();
    expect(full).toHaveLength(1);
    expect(full[0]).toMatchObject({ path: 'a.json', size: JSON.stringify(wf).length });
    expect((await get('/user001/api/userdata?dir=workflows&split=true')).json()).toEqual([
      ['a.json', 'a.json'],
    ]);
    expect((await get('/user001/api/userdata/workflows%2Fa.json')).json()).toEqual(wf);
    expect((await post('/user001/api/userdata/workflows%2Fa.json?overwrite=false', wf)).statusCode).toBe(409);
    const info = await post('/user001/api/userdata/workflows%2Fsub%2Fb.json?full_info=true', wf);
    expect(info.json()).toMatchObject({ path: 'workflows/sub/b.json' });
    expect((await get('/user001/api/userdata?dir=workflows')).json()).toEqual(['a.json']);
    expect((await get('/user001/api/userdata?dir=workflows&recurse=true')).json()).toEqual([
      'a.json',
      'sub/b.json',
    ]);
    const v2 = (await get('/user001/api/v2/userdata?path=workflows')).json();
    expect(v2.map((e: { path: string; type: string }) => `${e.type}:${e.path}`)).toEqual([
      'directory:workflows/sub',
      'file:workflows/a.json',
      'file:workflows/sub/b.json',
    ]);
    const mv = await h.app.inject({
      method: 'POST',
      url: '/user001/api/userdata/workflows%2Fa.json/move/workflows%2Fc.json?overwrite=false',
      headers: { authorization: alice },
    });
    expect(mv.statusCode).toBe(200);
    expect(mv.json()).toBe('workflows/c.json');
    expect((await get('/user001/api/userdata/workflows%2Fa.json')).statusCode).toBe(404);
    const del = await h.app.inject({
      method: 'DELETE',
      url: '/user001/api/userdata/workflows%2Fc.json',
      headers: { authorization: alice },
    });
    expect(del.statusCode).toBe(204);
    expect((await get('/user001/api/userdata?dir=workflows&recurse=true')).json()).toEqual(['sub/b.json']);
  });
});

describe('prompt, queue and history', () => {
  it('/api/jobs: jobs queued in the same millisecond keep their queue order, ascending or descending', async () => {
    const now = Date.now();
    const ids: string[] = [];
    for (let i = 0; i < 4; i++)
      ids.push(
        (await h.services.queue.store.enqueue({ user: 'user001', prompt: modelFreePrompt() }, now)).id,
      );
    for (const order of ['asc', 'desc']) {
      const r = (await get(`/user001/api/jobs?status=pending&sort_order=${order}`)).json();
      expect(r.jobs.map((j: { id: string; create_time: number }) => [j.id, j.create_time])).toEqual(
        ids.map((id) => [id, now]),
      );
    }
  });

  it('validates, enqueues and shows the job in queue, jobs and history', async () => {
    await uploadEnv(h);
    const r = await post('/user001/api/prompt', {
      prompt: modelFreePrompt(),
      client_id: 'tab-1',
      extra_data: { extra_pnginfo: { workflow: { id: 'wf-1' } }, api_key_comfy_org: 'secret' },
    });
    expect(r.statusCode).toBe(200);
    const { prompt_id, number, node_errors } = r.json();
    expect(typeof prompt_id).toBe('string');
    expect(number).toBe(1);
    expect(node_errors).toEqual({});

    const q1 = (await get('/user001/api/queue')).json();
    expect(q1.queue_running).toEqual([]);
    expect(q1.queue_pending).toHaveLength(1);
    expect(q1.queue_pending[0][1]).toBe(prompt_id);
    expect(q1.queue_pending[0][3].client_id).toBe('tab-1');
    expect(q1.queue_pending[0][3].api_key_comfy_org).toBeUndefined();
    expect(q1.queue_pending[0][4]).toEqual(['3']);
    expect((await get('/user001/api/prompt')).json()).toEqual({ exec_info: { queue_remaining: 1 } });
    const jobs = (await get('/user001/api/jobs?status=in_progress,pending&limit=200&offset=0')).json();
    expect(jobs.jobs).toHaveLength(1);
    expect(jobs.jobs[0]).toMatchObject({
      id: prompt_id,
      status: 'pending',
      priority: 1,
      workflow_id: 'wf-1',
      outputs_count: 0,
    });
    expect(jobs.pagination).toEqual({ offset: 0, limit: 200, total: 1, has_more: false });

    const done = await runJobAsWorker(h);
    expect(done.id).toBe(prompt_id);
    const hist = (await get('/user001/api/history')).json();
    expect(Object.keys(hist)).toEqual([prompt_id]);
    expect(hist[prompt_id].outputs).toEqual({
      3: { images: [{ filename: 'ComfyUI_00001_.png', subfolder: '', type: 'output' }] },
    });
    expect(hist[prompt_id].status.status_str).toBe('success');
    expect(hist[prompt_id].status.messages.map((m: [string]) => m[0])).toEqual([
      'execution_start',
      'execution_cached',
      'execution_success',
    ]);
    expect((await get(`/user001/api/history/${prompt_id}`)).json()[prompt_id].prompt[1]).toBe(prompt_id);
    const detail = (await get(`/user001/api/jobs/${prompt_id}`)).json();
    expect(detail).toMatchObject({
      id: prompt_id,
      status: 'completed',
      outputs_count: 1,
      preview_output: { filename: 'ComfyUI_00001_.png', nodeId: '3', mediaType: 'images' },
    });
    expect(detail.workflow.prompt['3'].class_type).toBe('SaveImage');
    const view = await get(`/user001/api/view?filename=ComfyUI_00001_.png&subfolder=&type=output`);
    expect(view.statusCode).toBe(200);
    expect(view.headers['content-type']).toBe('image/png');
    expect(view.rawPayload.subarray(0, 8).toString('hex')).toBe('89504e470d0a1a0a');

    expect((await post('/user001/api/history', { delete: [prompt_id] })).statusCode).toBe(200);
    expect((await get('/user001/api/history')).json()).toEqual({});
  });

  it("answers ComfyUI's validation errors and the queue limit in the shape the frontend shows", async () => {
    await uploadEnv(h);
    const bad = modelFreePrompt();
    (bad['1']!.inputs as Record<string, unknown>).width = 0;
    const r = await post('/user001/api/prompt', { prompt: bad });
    expect(r.statusCode).toBe(400);
    expect(r.json().error.type).toBe('prompt_outputs_failed_validation');
    expect(r.json().node_errors['1'].errors[0].type).toBe('value_smaller_than_min');
    expect((await post('/user001/api/prompt', { client_id: 'x' })).json().error.type).toBe('no_prompt');
    for (let i = 0; i < h.config.MAX_PENDING_PER_USER; i++)
      expect((await post('/user001/api/prompt', { prompt: modelFreePrompt() })).statusCode).toBe(200);
    const limited = await post('/user001/api/prompt', { prompt: modelFreePrompt() });
    expect(limited.statusCode).toBe(429);
    expect(limited.headers['retry-after']).toBeDefined();
    expect(limited.json()).toMatchObject({
      error: { type: 'queue_limit', message: 'Queue limit reached' },
      node_errors: {},
    });
    expect(limited.json().error.details).toMatch(/jobs waiting/);
  });

  it('cancels own pending jobs, interrupts the own running job', async () => {
    await uploadEnv(h);
    const a = (await post('/user001/api/prompt', { prompt: modelFreePrompt() })).json().prompt_id;
    const b = (await post('/user001/api/prompt', { prompt: modelFreePrompt() })).json().prompt_id;
    await h.services.queue.claim('w', []);
    expect((await post('/user001/api/queue', { delete: [b] })).statusCode).toBe(200);
    expect((await h.services.store.getJob(b))!.status).toBe('cancelled');
    // The frontend posts /interrupt with a JSON content type and no body.
    const i = await h.app.inject({
      method: 'POST',
      url: '/user001/api/interrupt',
      headers: { authorization: alice, 'content-type': 'application/json' },
    });
    expect(i.statusCode).toBe(200);
    expect((await h.services.store.getJob(a))!.status).toBe('cancelled');
    const hist = (await get('/user001/api/history')).json();
    expect(Object.keys(hist)).toEqual([a]);
    expect(hist[a].status.messages.at(-1)[0]).toBe('execution_interrupted');
    const jobs = (await get('/user001/api/jobs?status=completed,failed,cancelled')).json();
    expect(jobs.jobs.map((j: { id: string; status: string }) => [j.id, j.status])).toEqual([
      [a, 'cancelled'],
    ]);
  });
});

describe('front and late outputs', () => {
  it('honours front: true for instructors only', async () => {
    await uploadEnv(h);
    const teacher = await h.addUser('teacher', 'instructor');
    const mine = (await post('/user001/api/prompt', { prompt: modelFreePrompt(), front: true })).json()
      .prompt_id;
    expect((await h.services.store.getJob(mine))!.front).toBe(0);
    const theirs = (
      await post('/user001/api/prompt', { prompt: modelFreePrompt(), front: true }, teacher)
    ).json().prompt_id;
    const job = (await h.services.store.getJob(theirs))!;
    expect(job.front).toBeGreaterThan(0);
    expect(job.user).toBe('user001');
    const own = (await post('/teacher/api/prompt', { prompt: modelFreePrompt() }, teacher)).json().prompt_id;
    expect((await h.services.store.getJob(own))!.priority).toBe('instructor');
  });

  it('does not wait in /view for an output a running job has not stored (it was never announced)', async () => {
    await uploadEnv(h);
    await post('/user001/api/prompt', { prompt: modelFreePrompt() });
    const job = (await h.services.queue.claim('w', []))!;
    const t0 = performance.now();
    const r = await get(`/user001/api/view?filename=late.png&subfolder=${job.id}&type=output`);
    expect(r.statusCode).toBe(404);
    // The old /view re-checked every 250 ms for 10 s while the user had a running job.
    expect(performance.now() - t0).toBeLessThan(5000);
    await h.services.files.write(`user001/output/${job.id}/late.png`, tinyPng());
    expect(
      (await get(`/user001/api/view?filename=late.png&subfolder=${job.id}&type=output`)).statusCode,
    ).toBe(200);
  });
});

describe('uploads and files', () => {
  it('uploads like ComfyUI: dedupe by content, rename on conflict, overwrite', async () => {
    const u1 = await upload(
      h.app,
      alice,
      '/user001/upload/image',
      { type: 'input' },
      { name: 'a.png', body: tinyPng() },
    );
    expect(u1.json()).toEqual({ name: 'a.png', subfolder: '', type: 'input' });
    const u2 = await upload(h.app, alice, '/user001/upload/image', {}, { name: 'a.png', body: tinyPng() });
    expect(u2.json()).toEqual({ name: 'a.png', subfolder: '', type: 'input' });
    const u3 = await upload(
      h.app,
      alice,
      '/user001/upload/image',
      { type: 'input' },
      { name: 'a.png', body: tinyPng(1) },
    );
    expect(u3.json()).toEqual({ name: 'a (1).png', subfolder: '', type: 'input' });
    const u4 = await upload(
      h.app,
      alice,
      '/user001/upload/image',
      { type: 'input', overwrite: 'true' },
      { name: 'a.png', body: tinyPng(2) },
    );
    expect(u4.json().name).toBe('a.png');
    const u5 = await upload(
      h.app,
      alice,
      '/user001/upload/image',
      { subfolder: 'clipspace', type: 'input' },
      { name: 'b.png', body: tinyPng() },
    );
    expect(u5.json()).toEqual({ name: 'b.png', subfolder: 'clipspace', type: 'input' });
    expect((await upload(h.app, alice, '/user001/upload/image', { type: 'input' })).statusCode).toBe(400);
    const files = (await get('/user001/internal/files/input')).json();
    expect(files.sort()).toEqual(['a (1).png', 'a.png']);
    expect((await get('/user001/internal/files/bogus')).statusCode).toBe(400);
    const v = await get('/user001/view?filename=b.png&subfolder=clipspace&type=input');
    expect(v.statusCode).toBe(200);
    expect(v.rawPayload.equals(tinyPng())).toBe(true);
    expect((await get('/user001/view?filename=b.png%20%5Binput%5D&subfolder=clipspace')).statusCode).toBe(
      200,
    );
    const mask = await upload(
      h.app,
      alice,
      '/user001/upload/mask',
      {
        type: 'input',
        subfolder: 'clipspace',
        original_ref: JSON.stringify({ filename: 'a.png', subfolder: '', type: 'input' }),
      },
      { name: 'clipspace-mask-1.png', body: tinyPng(3) },
    );
    expect(mask.json()).toEqual({ name: 'clipspace-mask-1.png', subfolder: 'clipspace', type: 'input' });
  });

  it('shows the gallery and zips every output', async () => {
    await uploadEnv(h);
    await post('/user001/api/prompt', { prompt: modelFreePrompt() });
    const job = await runJobAsWorker(h, { filename: 'ci_00001_.png' });
    const page = await get('/user001/gallery');
    expect(page.statusCode).toBe(200);
    expect(page.headers['content-type']).toMatch(/text\/html/);
    expect(page.body).toContain('ci_00001_.png');
    expect(page.body).toContain('/user001/gallery/download.zip');
    // Named as ComfyUI names it, not after the job (issue #12).
    expect(page.body).not.toContain(job.id);
    const one = await get(`/user001/gallery/download?path=ci_00001_.png`);
    expect(one.statusCode).toBe(200);
    expect(one.headers['content-disposition']).toMatch(/^attachment/);
    const zip = await get('/user001/gallery/download.zip');
    expect(zip.statusCode).toBe(200);
    expect(zip.headers['content-type']).toBe('application/zip');
    expect(zip.rawPayload.subarray(0, 4).toString('hex')).toBe('504b0304');
    expect(zip.rawPayload.includes(tinyPng())).toBe(true);
    const names = readZip(zip.rawPayload).map((e) => e.name);
    expect(names).toContain('ci_00001_.png');
    expect(names.some((n) => n.includes(job.id))).toBe(false);
  });

  it('shows and zips non-file outputs (text, animated, custom fields) as history reports them', async () => {
    await uploadEnv(h);
    await post('/user001/api/prompt', { prompt: modelFreePrompt() });
    const job = (await h.services.queue.claim('fake-worker', []))!;
    const clip = await storeWorkerOutput(h, job, { filename: 'clip_00001.webp', body: tinyPng(7) });
    const gif = await storeWorkerOutput(h, job, { filename: 'vhs_00001.mp4', body: tinyPng(8) });
    const file = (f: { filename: string; subfolder: string }) => ({ ...f, type: 'output' as const });
    const outputs: JobOutput[] = [
      { nodeId: '9', kind: 'images', ...file(clip) },
      { nodeId: '9', kind: 'animated', filename: '', subfolder: '', type: 'output', value: true },
      {
        nodeId: '12',
        kind: 'text',
        filename: '',
        subfolder: '',
        type: 'output',
        value: '<b>hi</b> & <script>x()</script>',
      },
      {
        nodeId: '14',
        kind: 'gifs',
        ...file(gif),
        extra: { format: 'video/h264-mp4', frame_rate: 8, workflow: 'w.png' },
      },
    ];
    expect((await h.services.queue.complete(job.id, job.attempts, outputs)).ok).toBe(true);

    const page = (await get('/user001/gallery')).body;
    expect(page).toContain('&lt;b&gt;hi&lt;/b&gt; &amp; &lt;script&gt;x()&lt;/script&gt;');
    expect(page).not.toContain('<script>');
    expect(page).not.toContain('<b>hi');
    expect(page).toMatch(/clip_00001\.webp<\/span> <span class="badge">animated<\/span>/);
    expect(page).not.toMatch(/vhs_00001\.mp4<\/span> <span class="badge">/);
    const texts = (await get('/user001/gallery?kind=text')).body;
    expect(texts).toContain('&lt;b&gt;hi');
    expect(texts).not.toContain('clip_00001.webp</span>');

    const history = (await get(`/user001/api/history/${job.id}`)).json()[job.id].outputs;
    expect(history['12']).toEqual({ text: ['<b>hi</b> & <script>x()</script>'] });
    const entries = readZip((await get('/user001/gallery/download.zip')).rawPayload);
    const json = entries.find((e) => e.name === 'outputs.json');
    expect(JSON.parse(json!.data.toString('utf8'))).toEqual({ [job.id]: history });
    expect(entries.map((e) => e.name).sort()).toEqual(['clip_00001.webp', 'outputs.json', 'vhs_00001.mp4']);
    // The text filter's zip is the outputs.json alone; other filters carry only their files.
    const textZip = readZip((await get('/user001/gallery/download.zip?kind=text')).rawPayload);
    expect(textZip.map((e) => e.name)).toEqual(['outputs.json']);
    const videoZip = readZip((await get('/user001/gallery/download.zip?kind=video')).rawPayload);
    expect(videoZip.map((e) => e.name)).toEqual(['vhs_00001.mp4']);
  });
});

describe('workshop status', () => {
  it('reports the queue and broadcasts from instructors', async () => {
    const teacher = await h.addUser('teacher', 'instructor');
    await uploadEnv(h);
    await post('/user001/api/prompt', { prompt: modelFreePrompt() });
    const s = (await get('/user001/comfy-multi/status')).json();
    expect(s).toMatchObject({
      user: 'user001',
      pending: 1,
      running: 0,
      position: 1,
      gpu: { online: false, workers: 0 },
      hasEnvironment: true,
      broadcast: null,
    });
    expect((await post('/user001/comfy-multi/broadcast', { message: 'hi' })).statusCode).toBe(403);
    expect(
      (await post('/teacher/comfy-multi/broadcast', { message: 'Break until 11:00' }, teacher)).statusCode,
    ).toBe(200);
    expect((await get('/user001/comfy-multi/status')).json().broadcast.message).toBe('Break until 11:00');
    // In the instructors' activity log, like the dashboard's own action.
    const [entry] = await h.services.audit.recent(1);
    expect(entry).toMatchObject({
      by: 'teacher',
      action: 'broadcast.set',
      details: { message: 'Break until 11:00', via: 'comfyui' },
      ok: true,
    });
  });
});
