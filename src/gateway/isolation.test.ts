/**
 * The isolation matrix: user A (user001) against everything of user B (user002) — prompt ids,
 * outputs, uploads, temp files, workflows, settings, sockets. Every route answers 403/404 or an
 * empty answer, never B's data, and nothing of B's changes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { userFileKey } from '../files/safe-path.js';
import { modelFreePrompt } from '../../test/support/prompts.js';
import {
  RecordingSocket,
  listen,
  runJobAsWorker,
  startHarness,
  tinyPng,
  upload,
  uploadEnv,
  type Harness,
} from '../../test/support/gateway-kit.js';

let h: Harness;
let wsBase: string;
let A: string;
let B: string;
let bDone: string;
let bRunning: string;
let bPending: string;
const B_SECRET = 'b-secret-7f3a';

/** Every GET route of the per-user API (relative to `/<user>`). */
const GET_ROUTES = [
  'users',
  'settings',
  'settings/Comfy.Secret',
  'userdata?dir=workflows',
  'userdata/workflows%2Fsecret.json',
  'v2/userdata?path=workflows',
  'i18n',
  'extensions',
  'object_info',
  'object_info/LoadImage',
  'system_stats',
  'embeddings',
  'models',
  'models/checkpoints',
  'experiment/models',
  'experiment/models/checkpoints',
  'prompt',
  'queue',
  'history',
  'history/{done}',
  'jobs',
  'jobs/{done}',
  'view?filename={file}&subfolder={done}&type=output',
  'internal/files/input',
  'global_subgraphs',
  'node_replacements',
  'workflow_templates',
  'features',
  'comfy-multi/status',
];
const POST_ROUTES: [string, unknown][] = [
  ['prompt', { prompt: modelFreePrompt() }],
  ['queue', { clear: true }],
  ['queue', { delete: ['{pending}'] }],
  ['interrupt', {}],
  ['history', { clear: true }],
  ['settings', { 'Comfy.Secret': 'overwritten' }],
  ['settings/Comfy.Secret', 'overwritten'],
  ['userdata/workflows%2Fsecret.json', { overwritten: true }],
  ['userdata/workflows%2Fsecret.json/move/workflows%2Fstolen.json', null],
  ['jobs/{pending}/cancel', null],
  ['jobs/cancel', { job_ids: ['{pending}'] }],
];

const fill = (s: string) =>
  s
    .replaceAll('{done}', bDone)
    .replaceAll('{pending}', bPending)
    .replaceAll('{running}', bRunning)
    .replaceAll('{file}', `${B_SECRET}.png`);

const as = (auth: string, method: 'GET' | 'POST' | 'DELETE', url: string, body?: unknown) =>
  h.app.inject({
    method,
    url,
    headers: { authorization: auth, 'content-type': 'application/json' },
    ...(body === undefined || body === null ? {} : { payload: JSON.stringify(body) }),
  });

function neverB(body: string): void {
  for (const secret of [bDone, bRunning, bPending, B_SECRET, 'b-setting-value'])
    expect(body).not.toContain(secret);
}

async function bState() {
  const s = h.services.store;
  return {
    done: (await s.getJob(bDone))?.status,
    running: (await s.getJob(bRunning))?.status,
    pending: (await s.getJob(bPending))?.status,
    files: (await h.services.files.list('user002/')).map((f) => `${f.key}:${f.size}`).sort(),
  };
}

beforeAll(async () => {
  h = await startHarness();
  A = await h.addUser('user001');
  B = await h.addUser('user002');
  await uploadEnv(h);
  wsBase = (await listen(h)).replace('http', 'ws');
  // B: one finished job with an output, one running, one pending, an upload, a workflow, a setting.
  const post = (url: string, body: unknown) => as(B, 'POST', url, body);
  bDone = (await post('/user002/api/prompt', { prompt: modelFreePrompt() })).json().prompt_id;
  await runJobAsWorker(h, { filename: `${B_SECRET}.png` });
  bRunning = (await post('/user002/api/prompt', { prompt: modelFreePrompt() })).json().prompt_id;
  await h.services.queue.claim('w', []);
  bPending = (await post('/user002/api/prompt', { prompt: modelFreePrompt() })).json().prompt_id;
  await upload(
    h.app,
    B,
    '/user002/api/upload/image',
    { type: 'input' },
    { name: `${B_SECRET}-in.png`, body: tinyPng(9) },
  );
  await h.services.files.write(userFileKey('user002', 'temp', `${B_SECRET}-tmp.png`), tinyPng(8));
  await post('/user002/api/userdata/workflows%2Fsecret.json', { secret: B_SECRET });
  await post('/user002/api/settings', { 'Comfy.Secret': 'b-setting-value' });
}, 60_000);

afterAll(async () => {
  await h.close();
});

describe('user A against user B', () => {
  it("gets 403 on every route of B's space, as /x and /api/x, and changes nothing", async () => {
    const before = await bState();
    for (const route of GET_ROUTES) {
      for (const prefix of ['/user002/', '/user002/api/']) {
        const r = await as(A, 'GET', prefix + fill(route));
        expect(r.statusCode, `GET ${prefix}${route}`).toBe(403);
        neverB(r.body);
      }
    }
    for (const [route, body] of POST_ROUTES) {
      const r = await as(
        A,
        'POST',
        `/user002/api/${fill(route)}`,
        body === null ? null : JSON.parse(fill(JSON.stringify(body))),
      );
      expect(r.statusCode, `POST ${route}`).toBe(403);
      neverB(r.body);
    }
    for (const url of [
      '/user002/gallery',
      '/user002/gallery/download.zip',
      `/user002/gallery/download?path=${bDone}/${B_SECRET}.png`,
      '/user002/',
      '/user002',
    ]) {
      const r = await as(A, 'GET', url);
      expect(r.statusCode, url).toBe(403);
      neverB(r.body);
    }
    const del = await as(A, 'DELETE', '/user002/api/userdata/workflows%2Fsecret.json');
    expect(del.statusCode).toBe(403);
    const up = await upload(
      h.app,
      A,
      '/user002/api/upload/image',
      { type: 'input' },
      { name: 'x.png', body: tinyPng() },
    );
    expect(up.statusCode).toBe(403);
    const ws = await RecordingSocket.open(`${wsBase}/user002/ws`, { authorization: A }).catch(
      (e: Error) => e,
    );
    expect(String(ws)).toMatch(/403/);
    expect(await bState()).toEqual(before);
  });

  it("never sees or touches B's things through its own space", async () => {
    const before = await bState();
    const get = (path: string) => as(A, 'GET', `/user001/api/${fill(path)}`);
    for (const route of GET_ROUTES) {
      const r = await get(route);
      expect(r.statusCode, route).toBeLessThan(500);
      neverB(r.body);
    }
    expect((await get('history/{done}')).json()).toEqual({});
    expect((await get('jobs/{done}')).statusCode).toBe(404);
    expect((await get('jobs/{pending}')).statusCode).toBe(404);
    expect((await get('view?filename={file}&subfolder={done}&type=output')).statusCode).toBe(404);
    expect((await get(`view?filename=${B_SECRET}-in.png&type=input`)).statusCode).toBe(404);
    expect((await get(`view?filename=${B_SECRET}-tmp.png&type=temp`)).statusCode).toBe(404);
    expect(
      (await get(`view?filename=${B_SECRET}.png&subfolder=../user002/output/${bDone}&type=output`))
        .statusCode,
    ).toBe(400);
    expect((await get('userdata/workflows%2Fsecret.json')).statusCode).toBe(404);
    expect((await get('userdata/..%2F..%2Fuser002%2Fuserdata%2Fworkflows%2Fsecret.json')).statusCode).toBe(
      400,
    );
    expect((await get('settings')).json()).not.toHaveProperty('Comfy.Secret');
    expect((await get('queue')).json()).toEqual({ queue_running: [], queue_pending: [] });
    expect((await get('prompt')).json()).toEqual({ exec_info: { queue_remaining: 0 } });
    expect((await get('history')).json()).toEqual({});
    expect((await get('jobs')).json().jobs).toEqual([]);
    expect((await get('object_info/LoadImage')).json().LoadImage.input.required.image[0]).toEqual([]);
    expect((await get('internal/files/input')).json()).toEqual([]);
    expect((await get('internal/files/output')).json()).toEqual([]);
    expect((await get('internal/files/temp')).json()).toEqual([]);

    const post = (path: string, body: unknown) => as(A, 'POST', `/user001/api/${fill(path)}`, body);
    expect((await post('queue', { delete: [bPending, bRunning] })).statusCode).toBe(200);
    expect((await post('interrupt', { prompt_id: bRunning })).statusCode).toBe(200);
    expect((await post('interrupt', {})).statusCode).toBe(200);
    expect((await post('queue', { clear: true })).statusCode).toBe(200);
    expect((await post('history', { delete: [bDone] })).statusCode).toBe(200);
    expect((await post('history', { clear: true })).statusCode).toBe(200);
    expect((await post('jobs/{running}/cancel', null)).json()).toEqual({ cancelled: false });
    expect((await post('jobs/cancel', { job_ids: [bPending, bRunning] })).json()).toEqual({
      cancelled: false,
    });
    // Reusing B's prompt id cannot touch B's job.
    const reuse = await post('prompt', { prompt: modelFreePrompt(), prompt_id: bPending });
    expect(reuse.statusCode).toBe(400);
    neverB(JSON.stringify(reuse.json().node_errors));
    const page = await as(A, 'GET', '/user001/gallery');
    neverB(page.body);
    const zip = await as(A, 'GET', '/user001/gallery/download.zip');
    expect(zip.rawPayload.length).toBe(22);
    expect(await bState()).toEqual(before);
    expect((await as(B, 'GET', `/user002/api/history/${bDone}`)).json()).toHaveProperty(bDone);
  });

  it("keeps B's socket free of A's events", async () => {
    const bSock = await RecordingSocket.open(`${wsBase}/user002/ws?clientId=b-tab`, { authorization: B });
    await bSock.waitFor((r) => r.texts().length >= 1);
    // Let B's running job go so A's job can be claimed next.
    await h.services.queue.cancel(bRunning);
    await h.services.queue.cancel(bPending);
    await new Promise((r) => setTimeout(r, 700));
    const seen = bSock.messages.length;
    const aId = (
      await as(A, 'POST', '/user001/api/prompt', { prompt: modelFreePrompt(), client_id: 'b-tab' })
    ).json().prompt_id;
    await runJobAsWorker(h, { preview: Buffer.from([0, 0, 0, 1, 0, 0, 0, 1, 9, 9]) });
    await new Promise((r) => setTimeout(r, 700));
    const after = bSock.messages.slice(seen);
    expect(after.filter(Buffer.isBuffer)).toEqual([]);
    expect(JSON.stringify(after)).not.toContain(aId);
    bSock.close();
  });
});
