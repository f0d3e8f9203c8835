/**
 * A UI-format workflow (schema 1, a subgraph nested in a subgraph, a bypassed node) sent to
 * `POST /api/v1/jobs` is converted by the control plane, run by a real worker agent on the ComfyUI
 * stand-in, and its output arrives. With `COMFYUI_URL` set, a real ComfyUI runs it instead and
 * the test runs unchanged.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGpu, type TestGpu } from '../../test/support/agent.js';
import { listen, startHarness, type Harness } from '../../test/support/gateway-kit.js';
import { waitFor } from '../../test/support/processes.js';

const REAL_COMFYUI = process.env.COMFYUI_URL?.replace(/\/+$/, '') || null;
const TOKEN = 'convert-e2e-worker-token-0123456789';

let h: Harness;
let gpu: TestGpu | undefined;
let teacher: string;

/** The nested-subgraph fixture without its PrimitiveInt (the stand-in runs only a few node types). */
function workflow(): Record<string, unknown> {
  const wf = JSON.parse(
    readFileSync(
      new URL('../../test/fixtures/workflow-convert/nested_subgraphs_schema1.json', import.meta.url),
      'utf8',
    ),
  );
  wf.nodes = wf.nodes.filter((n: { id: number }) => n.id !== 3);
  wf.links = wf.links.filter((l: { id: number }) => l.id !== 9);
  wf.nodes.find((n: { id: number }) => n.id === 1).inputs[0].link = null;
  wf.nodes.find((n: { id: number }) => n.id === 2).widgets_values = ['convert-e2e'];
  return wf;
}

beforeAll(async () => {
  h = await startHarness({ WORKER_TOKENS: `gpu:${TOKEN}` });
  teacher = await h.addUser('teacher', 'instructor');
  await h.addUser('user001');
  const base = await listen(h);
  gpu = await startTestGpu(h, {
    serverUrl: base,
    token: TOKEN,
    name: 'gpu-convert',
    realComfyui: REAL_COMFYUI,
  });
}, 90_000);

afterAll(async () => {
  await gpu?.stop();
  await h?.close();
});

describe('a UI-format workflow through /api/v1/jobs', () => {
  it('is converted, runs on the worker and produces its output', async () => {
    const r = await h.app.inject({
      method: 'POST',
      url: '/api/v1/jobs',
      headers: { authorization: teacher, 'content-type': 'application/json' },
      payload: JSON.stringify({ user: 'user001', prompt: workflow() }),
    });
    expect(r.statusCode).toBe(201);
    const id = r.json().id as string;
    const job = await h.services.store.getJob(id);
    // Flattened: the inner EmptyImage keeps its own width (the instance input is unlinked).
    expect(job!.prompt['1:10:20']).toMatchObject({
      class_type: 'EmptyImage',
      inputs: { width: 512, height: 512, batch_size: 1, color: 0 },
    });
    expect(job!.prompt['2']!.inputs.images).toEqual(['1:11', 0]);
    await waitFor(
      async () => ['completed', 'failed'].includes((await h.services.store.getJob(id))!.status),
      60_000,
      'the job to finish',
    );
    const done = await h.services.store.getJob(id);
    expect(done!.status).toBe('completed');
    expect(done!.outputs.map((o) => o.filename)).toEqual([expect.stringMatching(/convert-e2e.*\.png$/)]);
  }, 90_000);
});
