/**
 * ComfyUI's template library mirrored from a worker (issue 13, item 1): a real worker agent reads
 * the `comfyui-workflow-templates` files its ComfyUI (the stand-in) serves at `/templates/`, offers
 * them with sizes and sha256, and uploads only what the control plane lacks; participants then get
 * the library in their Templates dialog, after the workshop's own category, also with no worker.
 */
import { createHash } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startHarness, type Harness } from '../../test/support/app-harness.js';
import { agentReady, startTestAgent } from '../../test/support/agent.js';
import { startStandin, type Standin } from '../../test/support/comfyui-standin/server.js';
import { standinTemplateLibrary } from '../../test/support/comfyui-standin/template-library.js';
import { waitFor } from '../../test/support/processes.js';
import { emptyLatentWorkflow } from '../../test/support/prompts.js';
import { listen } from '../../test/support/gateway-kit.js';
import type { AgentHandle } from '../worker/agent/index.js';

const TOKEN = 'template-mirror-worker-token-0123456789';
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

const WORKFLOW = emptyLatentWorkflow();

describe("ComfyUI's template library, mirrored from a worker", () => {
  let h: Harness;
  let base: string;
  let standin: Standin;
  let agent: AgentHandle | null = null;
  let alice: string;
  let teacher: string;
  /** sha256 of every content the control plane received from the agent. */
  let received: string[];

  const start = () =>
    startTestAgent({
      serverUrl: base,
      token: TOKEN,
      comfyuiUrl: standin.url,
      name: 'gpu-templates',
      mirrorFrontend: false,
      frontendRetry: { baseMs: 200, maxMs: 2_000 },
    });
  const get = (url: string, auth = alice) => h.app.inject({ url, headers: { authorization: auth } });

  beforeEach(async () => {
    h = await startHarness({ WORKER_TOKENS: `gpu:${TOKEN}` });
    alice = await h.addUser('user001');
    teacher = await h.addUser('teacher', 'instructor');
    base = await listen(h);
    standin = await startStandin({ templates: false });
    received = [];
    const lib = h.services.templateLibrary!;
    const receive = lib.receive.bind(lib);
    lib.receive = async (hash, body) => {
      received.push(hash);
      return receive(hash, body);
    };
  });
  afterEach(async () => {
    await agent?.stop();
    agent = null;
    await h.close();
    await standin.close();
  });

  it('copies the library once, serves it after the workshop category, and later sends only what changed', async () => {
    // A ComfyUI without the package: nothing to mirror, and no retrying either.
    agent = start();
    await agentReady(h);
    await waitFor(() => agent!.status().templates.state === 'absent', 15_000, 'the agent to find no library');
    expect(h.services.templateLibrary!.current()).toBeNull();
    expect((await get('/user001/templates/index.json')).json()).toEqual([]);
    await agent.stop();

    // The package installed: the agent offers it on its next connection.
    standin.setTemplates('0.1.95');
    agent = start();
    await waitFor(() => agent!.status().templates.state === 'done', 30_000, 'the library to be mirrored');
    const v1 = standinTemplateLibrary('0.1.95');
    const v1Shas = new Set([...v1.values()].map(sha));
    expect(new Set(received)).toEqual(v1Shas);
    expect(received.length).toBe(v1Shas.size);
    const current = h.services.templateLibrary!.current()!;
    expect(current.label).toBe('templates 0.1.95');
    expect(current.files.map((f) => f.path).sort()).toEqual([...v1.keys()].sort());

    // The instructor's own template leads; the library follows, as the stand-in's ComfyUI lists it.
    const add = await h.app.inject({
      method: 'POST',
      url: '/api/v1/templates',
      headers: { authorization: teacher, 'content-type': 'application/json' },
      payload: JSON.stringify({ title: 'Our first flow', description: 'Start here.', workflow: WORKFLOW }),
    });
    expect(add.statusCode).toBe(201);
    const index = (await get('/user001/templates/index.json')).json() as {
      title: string;
      templates: { name: string }[];
    }[];
    expect(index.map((c) => c.title)).toEqual(['Workshop', 'Getting Started', 'Image', 'Video']);
    expect(index[0]!.templates.map((t) => t.name)).toEqual(['workshop-our-first-flow']);
    expect(index[3]!.templates.map((t) => t.name)).toEqual(['ltxv_text_to_video']);
    // A thumbnail, the second picture of a hover variant, a workflow and a logo, byte for byte.
    for (const path of [
      'default-1.webp',
      'ltxv_text_to_video-2.webp',
      'image2image.json',
      'logo/comfy.png',
    ]) {
      const r = await get(`/user001/templates/${path}`);
      expect(r.statusCode, path).toBe(200);
      expect(r.rawPayload.equals(v1.get(path)!), path).toBe(true);
    }
    expect((await get('/user001/templates/default-1.webp')).headers['content-type']).toBe('image/webp');
    expect((await get('/user001/templates/fuse_options.json')).json()).toMatchObject({ threshold: 0.33 });
    // The localized index exists in the package: served with the workshop first; one it lacks is a
    // 404, so the frontend falls back to index.json as it does against ComfyUI.
    const fr = (await get('/user001/templates/index.fr.json')).json() as { title: string }[];
    expect(fr.map((c) => c.title)).toEqual(['Workshop', 'Premiers pas', 'Image', 'Vidéo']);
    expect((await get('/user001/templates/index.ja.json')).statusCode).toBe(404);
    // Nothing outside the library is reachable through it.
    expect((await get('/user001/templates/..%2f..%2fcomfy-multi.db')).statusCode).toBe(404);
    // The dashboard says which library participants get.
    const listing = (await get('/api/v1/templates', teacher)).json();
    expect(listing.library).toMatchObject({ label: 'templates 0.1.95', files: v1.size });

    // Still served with the worker gone.
    await agent.stop();
    agent = null;
    expect((await get('/user001/templates/image2image-1.webp')).statusCode).toBe(200);

    // A newer package: only the contents the control plane does not hold yet travel.
    standin.setTemplates('0.1.96');
    received = [];
    agent = start();
    await waitFor(
      () => h.services.templateLibrary!.current()?.label === 'templates 0.1.96',
      30_000,
      'the newer library',
    );
    const v2 = standinTemplateLibrary('0.1.96');
    const fresh = new Set([...v2.values()].map(sha).filter((s) => !v1Shas.has(s)));
    expect(fresh.size).toBeGreaterThan(0);
    expect(new Set(received)).toEqual(fresh);
    const names = (
      (await get('/user001/templates/index.json')).json() as { templates: { name: string }[] }[]
    )[2]!.templates.map((t) => t.name);
    expect(names).toEqual(['default', 'image2image', 'inpaint_example']);
  });

  it('is refused with TEMPLATES_NOT_WANTED when TEMPLATE_LIBRARY_MIRROR=false, and the agent stops offering', async () => {
    const off = await startHarness({ WORKER_TOKENS: `gpu:${TOKEN}`, TEMPLATE_LIBRARY_MIRROR: 'false' });
    try {
      const user = await off.addUser('user001');
      const r = await off.app.inject({
        method: 'POST',
        url: '/worker/v1/templates/offers',
        headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
        payload: JSON.stringify({
          source: 'http',
          comfyuiVersion: '0.3.64',
          frontendVersion: null,
          files: [{ path: 'index.json', size: 2, sha256: sha(Buffer.from('[]')) }],
        }),
      });
      expect(r.statusCode).toBe(409);
      expect(r.json().error.code).toBe('TEMPLATES_NOT_WANTED');
      expect(off.services.templateLibrary).toBeNull();
      // Participants still get the (empty) library answer, and the agent is never asked.
      expect(
        (
          await off.app.inject({ url: '/user001/templates/index.json', headers: { authorization: user } })
        ).json(),
      ).toEqual([]);
      standin.setTemplates('0.1.95');
      const offBase = await listen(off);
      agent = startTestAgent({
        serverUrl: offBase,
        token: TOKEN,
        comfyuiUrl: standin.url,
        name: 'gpu-off',
        mirrorFrontend: false,
      });
      await agentReady(off);
      expect(agent.status().templates.state).toBe('idle');
      expect(standin.requests.some((q) => q.path.startsWith('/templates/'))).toBe(false);
    } finally {
      await agent?.stop();
      agent = null;
      await off.close();
    }
  });
});
