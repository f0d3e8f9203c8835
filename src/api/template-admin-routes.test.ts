/**
 * Workshop templates (issue 13, item 1): the instructor's `/api/v1/templates` routes (upload,
 * replace, reorder, remove, default, send to everyone), every change audited, and what a
 * participant's Templates dialog then reads at `/<user>/templates/...`.
 */
import { readFileSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { WORKFLOW_FIXTURES } from '../../test/support/fixtures.js';
import { startHarness, tinyPng, uploadEnv, type Harness } from '../../test/support/gateway-kit.js';
import { emptyLatentWorkflow } from '../../test/support/prompts.js';

const fluxText = () => readFileSync(`${WORKFLOW_FIXTURES}/flux2_klein_9b_text_to_image.json`, 'utf8');
const ltxText = () => readFileSync(`${WORKFLOW_FIXTURES}/ltx2_text_to_video.json`, 'utf8');
const apiText = () => readFileSync(`${WORKFLOW_FIXTURES}/sdxl_api_format_example.json`, 'utf8');

/** A small UI-format workflow; `seed` (its batch size) makes distinct files. */
const tinyUi = (seed = 1) => emptyLatentWorkflow({ batchSize: seed });

let h: Harness;
let teacher: string;
let alice: string;
let bob: string;
beforeEach(async () => {
  h = await startHarness();
  teacher = await h.addUser('teacher', 'instructor');
  alice = await h.addUser('user001');
  bob = await h.addUser('user002');
});
afterEach(async () => {
  await h.close();
});

const call = (method: 'GET' | 'POST' | 'PUT' | 'DELETE', url: string, body?: unknown, auth = teacher) =>
  h.app.inject({
    method,
    url,
    headers: { authorization: auth, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { payload: JSON.stringify(body) } : {}),
  });
const add = (body: Record<string, unknown>) => call('POST', '/api/v1/templates', body);
const audits = async (action: string) =>
  (await h.services.audit.recent(200)).filter((e) => e.action === action);
const pngUrl = () => `data:image/png;base64,${tinyPng().toString('base64')}`;

describe('/api/v1/templates', () => {
  it('uploads a UI-format workflow with a thumbnail and lists it; the upload is audited', async () => {
    await uploadEnv(h);
    const r = await add({
      title: 'First steps',
      description: 'An empty latent.',
      workflow: tinyUi(),
      thumbnail: pngUrl(),
    });
    expect(r.statusCode).toBe(201);
    expect(r.json()).toMatchObject({
      id: 'workshop-first-steps',
      title: 'First steps',
      fileName: 'First steps.json',
      checked: true,
      thumbnail: { type: 'image/png' },
    });
    const list = (await call('GET', '/api/v1/templates')).json();
    expect(list.templates.map((t: { id: string }) => t.id)).toEqual(['workshop-first-steps']);
    const [entry] = await audits('template.add');
    expect(entry).toMatchObject({
      by: 'teacher',
      ok: true,
      details: { id: 'workshop-first-steps', checked: true },
    });
    const thumb = await call('GET', '/api/v1/templates/workshop-first-steps/thumbnail');
    expect(thumb.headers['content-type']).toBe('image/png');
    expect(thumb.rawPayload.equals(tinyPng())).toBe(true);
  });

  it('refuses a broken file with one clear error, and records the failed attempt', async () => {
    const broken = await add({ title: 'Broken', workflow: '{"nodes": [' });
    expect(broken.statusCode).toBe(400);
    expect(broken.json().error).toMatchObject({
      code: 'INVALID_WORKFLOW',
      message: expect.stringContaining('not valid JSON'),
    });

    const api = await add({ title: 'API export', workflow: apiText() });
    expect(api.statusCode).toBe(400);
    expect(api.json().error.message).toMatch(/not a workflow saved from ComfyUI's canvas.*Export \(API\)/);

    const shape = await add({ title: '', workflow: tinyUi() });
    expect(shape.statusCode).toBe(400);
    expect(shape.json().error.code).toBe('VALIDATION_FAILED');

    const fakePng = await add({
      title: 'Bad pic',
      workflow: tinyUi(),
      thumbnail: `data:image/png;base64,${Buffer.from('GIF89a....').toString('base64')}`,
    });
    expect(fakePng.statusCode).toBe(400);
    expect(fakePng.json().error.message).toMatch(/not a PNG image/);

    const failed = await audits('template.add');
    expect(failed.map((e) => [e.ok, e.error])).toEqual([
      [false, 'VALIDATION_FAILED'],
      [false, 'INVALID_WORKFLOW'],
      [false, 'INVALID_WORKFLOW'],
    ]);
    expect((await call('GET', '/api/v1/templates')).json().templates).toEqual([]);
  });

  it('names the node the converter cannot handle when a worker described its ComfyUI', async () => {
    await uploadEnv(h);
    const wf = JSON.parse(tinyUi());
    wf.nodes[0].type = 'NoSuchNode';
    const r = await add({ title: 'Unknown node', workflow: JSON.stringify(wf) });
    expect(r.statusCode).toBe(400);
    expect(r.json().error).toMatchObject({ code: 'INVALID_WORKFLOW', details: { node_id: '1' } });
  });

  it('keeps a real workshop workflow unchecked while no worker has described its ComfyUI', async () => {
    const r = await add({ title: 'LTX-2 text to video', workflow: ltxText() });
    expect(r.statusCode).toBe(201);
    expect(r.json()).toMatchObject({ id: 'workshop-ltx-2-text-to-video', checked: false });
  });

  it('replaces, reorders and removes; each change is audited and a wrong order is refused', async () => {
    await uploadEnv(h);
    const a = (await add({ title: 'A', workflow: tinyUi(1), thumbnail: pngUrl() })).json().id;
    const b = (await add({ title: 'B', workflow: tinyUi(2) })).json().id;
    const c = (await add({ title: 'B', workflow: tinyUi(3) })).json().id;
    expect([a, b, c]).toEqual(['workshop-a', 'workshop-b', 'workshop-b-2']);

    const rep = await call('PUT', `/api/v1/templates/${a}`, {
      description: 'new words',
      workflow: tinyUi(9),
    });
    expect(rep.statusCode).toBe(200);
    expect(rep.json()).toMatchObject({
      id: a,
      title: 'A',
      description: 'new words',
      thumbnail: { type: 'image/png' },
    });
    expect(
      JSON.parse((await call('GET', `/api/v1/templates/${a}/workflow`)).body).nodes[0].widgets_values,
    ).toEqual([512, 512, 9]);

    const bad = await call('PUT', '/api/v1/templates/order', { ids: [c, a] });
    expect(bad.statusCode).toBe(400);
    const ok = await call('PUT', '/api/v1/templates/order', { ids: [c, a, b] });
    expect(ok.statusCode).toBe(200);
    expect(
      (await call('GET', '/api/v1/templates')).json().templates.map((t: { id: string }) => t.id),
    ).toEqual([c, a, b]);

    expect((await call('DELETE', `/api/v1/templates/${a}`)).statusCode).toBe(200);
    expect((await call('DELETE', `/api/v1/templates/${a}`)).statusCode).toBe(404);
    expect(
      (await call('GET', '/api/v1/templates')).json().templates.map((t: { id: string }) => t.id),
    ).toEqual([c, b]);

    expect((await audits('template.replace')).map((e) => e.ok)).toEqual([true]);
    expect((await audits('template.reorder')).map((e) => e.ok)).toEqual([true, false]);
    expect((await audits('template.remove')).map((e) => [e.target, e.ok])).toEqual([
      [a, false],
      [a, true],
    ]);
  });

  it('gives a title no file system takes a file name that works, and sends it', async () => {
    await uploadEnv(h);
    const r = await add({ title: `C:/../${'🎨'.repeat(70)}`, workflow: tinyUi() });
    expect(r.statusCode).toBe(201);
    const { id, fileName } = r.json();
    expect(fileName).toMatch(/^C \.\. 🎨+\.json$/u);
    expect(Buffer.byteLength(fileName)).toBeLessThanOrEqual(205);
    const sent = await call('POST', `/api/v1/templates/${id}/send`, {});
    expect(sent.json()).toMatchObject({ written: ['user001', 'user002'], kept: [] });
  });

  it('is for instructors only', async () => {
    expect((await call('GET', '/api/v1/templates', undefined, alice)).statusCode).toBe(403);
    expect(
      (await call('POST', '/api/v1/templates', { title: 'x', workflow: tinyUi() }, alice)).statusCode,
    ).toBe(403);
  });
});

describe("a participant's Templates dialog", () => {
  it('lists the workshop category first, with thumbnails and descriptions, and serves the workflow', async () => {
    await uploadEnv(h);
    await add({ title: 'With picture', description: 'Has a PNG.', workflow: tinyUi(1), thumbnail: pngUrl() });
    await add({ title: 'Plain', description: 'No picture.', workflow: tinyUi(2) });
    const r = await call('GET', '/user001/templates/index.json', undefined, alice);
    expect(r.statusCode).toBe(200);
    expect(r.headers['content-type']).toMatch(/application\/json/);
    const [first] = r.json();
    expect(first).toMatchObject({ moduleName: 'default', title: 'Workshop', isEssential: true });
    expect(first.templates).toMatchObject([
      {
        name: 'workshop-with-picture',
        title: 'With picture',
        description: 'Has a PNG.',
        mediaType: 'image',
        mediaSubtype: 'png',
      },
      { name: 'workshop-plain', title: 'Plain', description: 'No picture.', mediaSubtype: 'svg' },
    ]);
    const pic = await call('GET', '/user001/templates/workshop-with-picture-1.png', undefined, alice);
    expect(pic.headers['content-type']).toBe('image/png');
    const card = await call('GET', '/user001/templates/workshop-plain-1.svg', undefined, alice);
    expect(card.headers['content-type']).toMatch(/image\/svg\+xml/);
    expect(card.body).toContain('Plain');
    const wf = await call('GET', '/user001/templates/workshop-plain.json', undefined, alice);
    expect(JSON.parse(wf.body).nodes[0].widgets_values).toEqual([512, 512, 2]);
    // Without a mirrored library, a locale index is the same list (nothing to fall back to).
    expect((await call('GET', '/user001/templates/index.fr.json', undefined, alice)).json()[0].title).toBe(
      'Workshop',
    );
    expect((await call('GET', '/user001/templates/nothing.json', undefined, alice)).statusCode).toBe(404);
  });

  it('answers an empty library as before when the instructor has no templates', async () => {
    expect((await call('GET', '/user001/templates/index.json', undefined, alice)).json()).toEqual([]);
    expect((await call('GET', '/user001/templates/fuse_options.json', undefined, alice)).json()).toEqual({});
  });

  it("opens the default workflow on a never-seen participant's first visit", async () => {
    await uploadEnv(h);
    const id = (await add({ title: 'Start here', workflow: tinyUi(7), default: true })).json().id;
    expect((await call('GET', '/api/v1/templates')).json().defaultId).toBe(id);
    // The frontend's first request reads the settings: that is the first visit.
    expect((await call('GET', '/user001/api/settings', undefined, alice)).statusCode).toBe(200);
    const status = await call('GET', '/user001/comfy-multi/status', undefined, alice);
    expect(status.json().defaultWorkflow).toBe('workflows/Start here.json');
    const file = await call(
      'GET',
      `/user001/api/userdata/${encodeURIComponent('workflows/Start here.json')}`,
      undefined,
      alice,
    );
    expect(file.statusCode).toBe(200);
    expect(JSON.parse(file.body).nodes[0].widgets_values).toEqual([512, 512, 7]);
    expect((await call('PUT', '/api/v1/templates/default', { id: null })).statusCode).toBe(200);
    expect((await audits('template.default')).map((e) => [e.target, e.ok])).toEqual([[null, true]]);
  });

  it("sends a template into every participant's own workflow list, never another's, keeping their copy", async () => {
    await uploadEnv(h);
    const id = (await add({ title: 'Homework', workflow: tinyUi(5) })).json().id;
    // user002 already saved a file of that name: it stays theirs.
    const own = await h.app.inject({
      method: 'POST',
      url: `/user002/api/userdata/${encodeURIComponent('workflows/Homework.json')}`,
      headers: { authorization: bob, 'content-type': 'application/json' },
      payload: '{"mine":true}',
    });
    expect(own.statusCode).toBe(200);
    const r = await call('POST', `/api/v1/templates/${id}/send`, {});
    expect(r.statusCode).toBe(200);
    expect(r.json()).toEqual({ file: 'workflows/Homework.json', written: ['user001'], kept: ['user002'] });
    const [entry] = await audits('template.send');
    expect(entry).toMatchObject({ target: id, ok: true, details: { written: 1, kept: 1 } });

    const list = async (auth: string, user: string) =>
      (
        await h.app.inject({
          url: `/${user}/api/userdata?dir=workflows&recurse=true`,
          headers: { authorization: auth },
        })
      ).json();
    expect(await list(alice, 'user001')).toEqual(['Homework.json']);
    const bobs = await h.app.inject({
      url: `/user002/api/userdata/${encodeURIComponent('workflows/Homework.json')}`,
      headers: { authorization: bob },
    });
    expect(JSON.parse(bobs.body)).toEqual({ mine: true });
    // Isolation: one participant never reaches another's workflows.
    const peek = await h.app.inject({
      url: `/user002/api/userdata/${encodeURIComponent('workflows/Homework.json')}`,
      headers: { authorization: alice },
    });
    expect(peek.statusCode).toBe(403);
    // The models page lists the workshop's templates by title.
    const models = (await call('GET', '/api/v1/templates/models')).json();
    expect(models.templates.map((t: { name: string; id?: string }) => [t.name, t.id])).toEqual([
      ['Homework', id],
    ]);
    // A workshop workflow whose nodes the workers' ComfyUI does not know is refused, naming one.
    const flux = await add({ title: 'Flux', workflow: fluxText() });
    expect(flux.statusCode).toBe(400);
    expect(flux.json().error).toMatchObject({
      code: 'INVALID_WORKFLOW',
      message: expect.stringContaining('"Flux2Scheduler" (a custom node that is not installed?)'),
    });
  });
});
