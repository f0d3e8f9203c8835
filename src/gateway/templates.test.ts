import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { buildApp } from '../app.js';
import { createLogger } from '../logger.js';
import { createServices } from '../services.js';
import { modelFreePrompt } from '../../test/support/prompts.js';
import { runJobAsWorker, startHarness, uploadEnv, type Harness } from '../../test/support/gateway-kit.js';

let h: Harness;
let dir: string;
let alice: string;

const TEMPLATE_A = { last_node_id: 1, nodes: [{ id: 1, type: 'EmptyImage' }], note: 'template a' };
const TEMPLATE_B = { last_node_id: 2, nodes: [], note: 'template b' };
const START = { last_node_id: 3, nodes: [], note: 'the default workflow' };

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cm-templates-'));
  await mkdir(join(dir, 'templates', 'advanced'), { recursive: true });
  await writeFile(join(dir, 'templates', 'a.json'), JSON.stringify(TEMPLATE_A));
  await writeFile(join(dir, 'templates', 'advanced', 'b.json'), JSON.stringify(TEMPLATE_B));
  await writeFile(join(dir, 'templates', 'notes.txt'), 'not a workflow');
  await writeFile(join(dir, 'start.json'), JSON.stringify(START));
  h = await startHarness({
    TEMPLATES_DIR: join(dir, 'templates'),
    DEFAULT_WORKFLOW: join(dir, 'start.json'),
  });
  alice = await h.addUser('user001');
});
afterEach(async () => {
  await h.close();
  await rm(dir, { recursive: true, force: true });
});

const get = (url: string) => h.app.inject({ method: 'GET', url, headers: { authorization: alice } });
const send = (method: 'POST' | 'DELETE', url: string, body?: unknown) =>
  h.app.inject({
    method,
    url,
    headers: { authorization: alice },
    ...(body === undefined ? {} : { payload: JSON.stringify(body) }),
  });

describe('shared templates and the default workflow', () => {
  it('seeds a new participant once and opens the default workflow once', async () => {
    expect((await get('/user001/api/settings')).json()).toEqual({ 'Comfy.TutorialCompleted': true });
    expect((await get('/user001/api/userdata?dir=workflows')).json()).toEqual(['a.json', 'start.json']);
    expect((await get('/user001/api/userdata/workflows%2Fstart.json')).json()).toEqual(START);
    const s1 = (await get('/user001/comfy-multi/status')).json();
    expect(s1.defaultWorkflow).toBe('workflows/start.json');
    expect((await send('POST', '/user001/comfy-multi/default-workflow/opened')).statusCode).toBe(204);
    expect((await get('/user001/comfy-multi/status')).json().defaultWorkflow).toBeNull();
    // Seeding happens once: a deleted default workflow does not come back.
    expect((await send('DELETE', '/user001/api/userdata/workflows%2Fstart.json')).statusCode).toBe(204);
    await get('/user001/api/users');
    expect((await get('/user001/api/userdata?dir=workflows')).json()).toEqual(['a.json']);
  });

  it("shows templates read-only in every workflow list; saving one saves the user's own copy", async () => {
    expect((await get('/user001/api/userdata?dir=workflows&recurse=true')).json()).toEqual([
      'a.json',
      'advanced/b.json',
    ]);
    const full = (await get('/user001/api/userdata?dir=workflows&recurse=true&full_info=true')).json();
    expect(full.map((f: { path: string }) => f.path)).toEqual(['a.json', 'advanced/b.json']);
    expect((await get('/user001/api/userdata/workflows%2Fadvanced%2Fb.json')).json()).toEqual(TEMPLATE_B);
    expect(
      (await send('POST', '/user001/api/userdata/workflows%2Fa.json?overwrite=false', { changed: true }))
        .statusCode,
    ).toBe(409);
    expect((await send('DELETE', '/user001/api/userdata/workflows%2Fa.json')).statusCode).toBe(403);

    const changed = { ...TEMPLATE_A, note: 'my version' };
    expect(
      (await send('POST', '/user001/api/userdata/workflows%2Fa.json?overwrite=true', changed)).statusCode,
    ).toBe(200);
    expect((await get('/user001/api/userdata/workflows%2Fa.json')).json()).toEqual(changed);
    expect(JSON.parse(await readFile(join(dir, 'templates', 'a.json'), 'utf8'))).toEqual(TEMPLATE_A);
    // Another participant still sees the shared one.
    const bob = await h.addUser('user002');
    const theirs = await h.app.inject({
      method: 'GET',
      url: '/user002/api/userdata/workflows%2Fa.json',
      headers: { authorization: bob },
    });
    expect(theirs.json()).toEqual(TEMPLATE_A);
    // Deleting the own copy brings the template back.
    expect((await send('DELETE', '/user001/api/userdata/workflows%2Fa.json')).statusCode).toBe(204);
    expect((await get('/user001/api/userdata/workflows%2Fa.json')).json()).toEqual(TEMPLATE_A);
    // Renaming a template copies it.
    const mv = await send('POST', '/user001/api/userdata/workflows%2Fa.json/move/workflows%2Fmine.json');
    expect(mv.json()).toBe('workflows/mine.json');
    expect((await get('/user001/api/userdata?dir=workflows')).json()).toEqual(['a.json', 'mine.json']);
    const v2 = (await get('/user001/api/v2/userdata?path=workflows')).json();
    expect(v2.map((e: { name: string; type: string }) => `${e.type}:${e.name}`)).toEqual([
      'directory:advanced',
      'file:a.json',
      'file:b.json',
      'file:mine.json',
    ]);
  });

  it('lists top-level templates in workflow_templates', async () => {
    expect((await get('/user001/api/workflow_templates')).json()).toEqual({ workshop: ['a'] });
    expect((await get('/user001/api/workflow_templates/workshop/a.json')).json()).toEqual(TEMPLATE_A);
    expect((await get('/user001/api/workflow_templates/workshop/..%2Fstart.json')).statusCode).toBe(404);
    expect((await get('/user001/api/workflow_templates/other/a.json')).statusCode).toBe(404);
  });

  it("shows a template's picture in the template browser, or a card with its name", async () => {
    const card = await get('/user001/api/workflow_templates/workshop/a.jpg');
    expect(card.statusCode).toBe(200);
    expect(card.headers['content-type']).toMatch(/^image\/svg\+xml/);
    expect(card.body).toContain('>a</text>');
    const png = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 1, 2, 3]);
    await writeFile(join(dir, 'templates', 'a.png'), png);
    const picture = await get('/user001/api/workflow_templates/workshop/a.jpg');
    expect(picture.headers['content-type']).toBe('image/png');
    expect(picture.rawPayload.equals(png)).toBe(true);
    expect((await get('/user001/api/workflow_templates/workshop/missing.jpg')).statusCode).toBe(404);
    expect((await get('/user001/api/workflow_templates/workshop/..%2Fstart.jpg')).statusCode).toBe(404);
  });

  it('keeps settings, workflows, uploads, history and outputs across a restart', async () => {
    await uploadEnv(h);
    await send('POST', '/user001/api/settings/Comfy.Foo', 42);
    await send('POST', '/user001/api/userdata/workflows%2Fmine.json', { mine: true });
    const id = (await send('POST', '/user001/api/prompt', { prompt: modelFreePrompt() })).json().prompt_id;
    await runJobAsWorker(h);
    // A second control plane over the same data folder and database, as after a restart.
    const services = await createServices(h.config, h.services.store, createLogger('silent'));
    const app2 = await buildApp(services);
    try {
      const get2 = (url: string) => app2.inject({ method: 'GET', url, headers: { authorization: alice } });
      expect((await get2('/user001/api/settings')).json()).toMatchObject({
        'Comfy.Foo': 42,
        'Comfy.TutorialCompleted': true,
      });
      expect((await get2('/user001/api/userdata/workflows%2Fmine.json')).json()).toEqual({ mine: true });
      const hist = (await get2('/user001/api/history')).json();
      expect(Object.keys(hist)).toEqual([id]);
      const out = hist[id].outputs['3'].images[0];
      expect(
        (await get2(`/user001/api/view?filename=${out.filename}&subfolder=${out.subfolder}&type=output`))
          .statusCode,
      ).toBe(200);
      expect((await get2('/user001/comfy-multi/status')).json().defaultWorkflow).toBe('workflows/start.json');
    } finally {
      services.queue.stop();
      await app2.close();
    }
  });
});
