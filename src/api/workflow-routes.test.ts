/**
 * UI-format workflows over HTTP (issue 13, items 2 and 3): `POST /api/v1/workflows/convert`,
 * `POST /api/v1/jobs` with a UI-format prompt, and the submit-time model check on `/api/v1/jobs`
 * and `/<user>/api/prompt` against the model files of every known worker.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { WORKFLOW_FIXTURES } from '../../test/support/fixtures.js';
import { LOADER_INPUT_FOLDERS } from '../comfy/model-folders.js';
import { saveEnv } from '../dispatch/env-snapshots.js';
import { startHarness, testSnapshot, uploadEnv, type Harness } from '../../test/support/gateway-kit.js';
import type { EnvSnapshot } from '../worker/protocol.js';

const NEWER = JSON.parse(
  readFileSync(
    new URL('../../test/fixtures/workflow-convert/object_info-newer-nodes.json', import.meta.url),
    'utf8',
  ),
) as Record<string, unknown>;
const REFERENCE = JSON.parse(
  readFileSync(
    new URL(
      '../../test/fixtures/workflow-convert/flux2_klein_9b_text_to_image.frontend.api.json',
      import.meta.url,
    ),
    'utf8',
  ),
) as Record<string, { inputs: unknown }>;
const flux = () => JSON.parse(readFileSync(`${WORKFLOW_FIXTURES}/flux2_klein_9b_text_to_image.json`, 'utf8'));

const FLUX_MODELS = {
  diffusion_models: ['flux-2-klein-base-9b-fp8.safetensors'],
  text_encoders: ['qwen_3_8b_fp8mixed.safetensors'],
  vae: ['flux2-vae.safetensors'],
};

/**
 * A worker environment as a ComfyUI with these model files reports it: its loaders' file lists
 * in object_info are the files in their folders (a newer ComfyUI's CLIPLoader also knows `flux2`).
 */
function snapshot(models: Record<string, string[]>, objectInfo: Record<string, unknown> = {}): EnvSnapshot {
  const base = testSnapshot();
  const info = structuredClone({ ...base.objectInfo, ...NEWER }) as Record<string, NodeInfo>;
  for (const [node, inputs] of Object.entries(LOADER_INPUT_FOLDERS)) {
    for (const [input, folder] of Object.entries(inputs)) {
      const spec = info[node]?.input?.required?.[input];
      if (Array.isArray(spec) && Array.isArray(spec[0])) spec[0] = [...(models[folder] ?? [])];
    }
  }
  const clipType = info.CLIPLoader?.input?.required?.type;
  if (Array.isArray(clipType) && Array.isArray(clipType[0])) clipType[0].push('flux2');
  return { ...base, objectInfo: { ...info, ...objectInfo }, models };
}
type NodeInfo = { input?: { required?: Record<string, unknown[]> } };

let h: Harness;
let teacher: string;
let alice: string;
beforeEach(async () => {
  h = await startHarness();
  teacher = await h.addUser('teacher', 'instructor');
  alice = await h.addUser('user001');
});
afterEach(async () => {
  await h.close();
});

const post = (url: string, body: unknown, auth = teacher) =>
  h.app.inject({
    method: 'POST',
    url,
    headers: { authorization: auth, 'content-type': 'application/json' },
    payload: JSON.stringify(body),
  });

/**
 * A worker known to the registry with its own snapshot (not the current environment), in `on`
 * (the shared harness by default).
 */
async function knownWorker(id: string, env: EnvSnapshot, on: Harness = h, name = id): Promise<void> {
  const hash = createHash('sha256').update(JSON.stringify(env)).digest('hex');
  await saveEnv(on.services.store, hash, env);
  const link = { send: () => false, close: () => {}, open: false };
  on.services.workers.connect(
    id,
    {
      name,
      tokenName: 'test',
      agentVersion: '1',
      comfyuiVersion: '0.3.64',
      devices: [],
      envHash: hash,
      prefetch: 1,
      inFlight: [],
      warmModels: [],
      healthy: true,
    } as unknown as Parameters<typeof on.services.workers.connect>[1],
    link,
  );
}

describe('POST /api/v1/workflows/convert', () => {
  it('says why it cannot convert while no worker has described its ComfyUI', async () => {
    const r = await post('/api/v1/workflows/convert', { workflow: flux() });
    expect(r.statusCode).toBe(409);
    expect(r.json().error.message).toMatch(/No GPU worker has described its ComfyUI yet/);
  });

  it("converts a UI-format workflow as the frontend does, with the workers' object_info", async () => {
    await uploadEnv(h, snapshot(FLUX_MODELS));
    const r = await post('/api/v1/workflows/convert', { workflow: flux() });
    expect(r.statusCode).toBe(200);
    const { prompt, format } = r.json();
    expect(format).toBe('ui');
    expect(Object.keys(prompt).sort()).toEqual(Object.keys(REFERENCE).sort());
    for (const [id, node] of Object.entries(REFERENCE)) expect(prompt[id].inputs).toEqual(node.inputs);
  });

  it('returns an API-format workflow as it is', async () => {
    const api = JSON.parse(readFileSync(`${WORKFLOW_FIXTURES}/sdxl_api_format_example.json`, 'utf8'));
    const r = await post('/api/v1/workflows/convert', { workflow: api });
    expect(r.json()).toEqual({ prompt: api, format: 'api' });
  });

  it('names the node of a broken workflow', async () => {
    await uploadEnv(h, snapshot(FLUX_MODELS));
    const wf = flux();
    const sub = wf.definitions.subgraphs[0];
    sub.links = sub.links.filter((l: { id: number }) => l.id !== 145); // Flux2Scheduler → sampler
    const r = await post('/api/v1/workflows/convert', { workflow: wf });
    expect(r.statusCode).toBe(400);
    expect(r.json().error).toMatchObject({
      code: 'INVALID_WORKFLOW',
      message: expect.stringContaining('node 75:64 (SamplerCustomAdvanced)'),
      details: { node_id: '75:64', class_type: 'SamplerCustomAdvanced' },
    });
  });

  it('is for instructors only and validates its body', async () => {
    expect((await post('/api/v1/workflows/convert', { workflow: flux() }, alice)).statusCode).toBe(403);
    expect((await post('/api/v1/workflows/convert', { flow: {} })).json().error.code).toBe(
      'VALIDATION_FAILED',
    );
  });
});

describe('POST /api/v1/jobs with a UI-format workflow', () => {
  it('queues the converted prompt, with the workflow where the frontend puts it', async () => {
    await uploadEnv(h, snapshot(FLUX_MODELS));
    const r = await post('/api/v1/jobs', { user: 'user001', prompt: flux() });
    expect(r.statusCode).toBe(201);
    const job = await h.services.store.getJob(r.json().id);
    expect(job!.prompt['9']!.inputs.images).toEqual(['75:65', 0]);
    expect(job!.models.sort()).toEqual([
      'diffusion_models/flux-2-klein-base-9b-fp8.safetensors',
      'text_encoders/qwen_3_8b_fp8mixed.safetensors',
      'vae/flux2-vae.safetensors',
    ]);
    const extra = job!.metadata.extra_data as { extra_pnginfo: { workflow: { nodes: unknown[] } } };
    expect(extra.extra_pnginfo.workflow.nodes).toHaveLength(7);
  });

  it('refuses a prompt needing a model file no worker has, naming the file', async () => {
    await uploadEnv(h, snapshot({ ...FLUX_MODELS, vae: ['other-vae.safetensors'] }));
    const r = await post('/api/v1/jobs', { user: 'user001', prompt: flux() });
    expect(r.statusCode).toBe(400);
    const { error } = r.json();
    const { node_errors } = r.json();
    expect(error.code).toBe('INVALID_PROMPT');
    expect(error.type).toBe('prompt_outputs_failed_validation');
    expect(node_errors['75:72'].errors[0]).toMatchObject({
      type: 'value_not_in_list',
      details: "vae_name: 'flux2-vae.safetensors' not in ['other-vae.safetensors']",
      extra_info: { input_name: 'vae_name', received_value: 'flux2-vae.safetensors' },
    });
    expect(await h.services.store.countByStatus('user001')).toMatchObject({ pending: 0 });
  });

  it('accepts a file that only another known worker has', async () => {
    await uploadEnv(h, snapshot({ ...FLUX_MODELS, vae: [] }));
    await knownWorker('gpu-2', snapshot({ vae: ['flux2-vae.safetensors'] }));
    expect((await post('/api/v1/jobs', { user: 'user001', prompt: flux() })).statusCode).toBe(201);
  });
});

describe('POST /<user>/api/prompt model check', () => {
  const checkpointPrompt = (name: string) => ({
    '1': { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: name } },
    '2': { class_type: 'PreviewAny', inputs: { source: ['1', 0] } },
  });
  const withCheckpoints = (files: string[]) =>
    snapshot(
      { checkpoints: files },
      {
        CheckpointLoaderSimple: {
          ...(testSnapshot().objectInfo.CheckpointLoaderSimple as object),
          input: { required: { ckpt_name: [files, {}] } },
        },
      },
    );

  it('accepts a checkpoint only another known worker has (the combo lists every worker’s files)', async () => {
    await uploadEnv(h, withCheckpoints(['sd15.safetensors']));
    await knownWorker('gpu-2', withCheckpoints(['xl.safetensors']));
    const r = await post('/user001/api/prompt', { prompt: checkpointPrompt('xl.safetensors') }, alice);
    expect(r.statusCode).toBe(200);
  });

  it('refuses a checkpoint no known worker has, listing every worker’s files', async () => {
    await uploadEnv(h, withCheckpoints(['sd15.safetensors']));
    await knownWorker('gpu-2', withCheckpoints(['xl.safetensors']));
    const r = await post('/user001/api/prompt', { prompt: checkpointPrompt('none.safetensors') }, alice);
    expect(r.statusCode).toBe(400);
    expect(r.json()).toEqual({
      error: {
        type: 'prompt_outputs_failed_validation',
        message: 'Prompt outputs failed validation',
        details: '', // as ComfyUI: the error is upstream of the output
        extra_info: {},
      },
      node_errors: {
        '1': {
          errors: [
            {
              type: 'value_not_in_list',
              message: 'Value not in list',
              details: "ckpt_name: 'none.safetensors' not in ['sd15.safetensors', 'xl.safetensors']",
              extra_info: {
                input_name: 'ckpt_name',
                input_config: [['sd15.safetensors', 'xl.safetensors'], {}],
                received_value: 'none.safetensors',
              },
            },
          ],
          dependent_outputs: ['2'],
          class_type: 'CheckpointLoaderSimple',
        },
      },
    });
  });
});

describe('GET /api/v1/templates/models', () => {
  it('shows per template which worker lacks which file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cm-templates-'));
    writeFileSync(join(dir, 'flux.json'), JSON.stringify(flux()));
    writeFileSync(join(dir, 'broken.json'), '{"nodes": [');
    const t = await startHarness({ TEMPLATES_DIR: dir });
    try {
      const admin = await t.addUser('teacher', 'instructor');
      const env = snapshot({ ...FLUX_MODELS, vae: [] });
      await knownWorker('w1', env, t, 'gpu1');
      const r = await t.app.inject({
        method: 'GET',
        url: '/api/v1/templates/models',
        headers: { authorization: admin },
      });
      expect(r.statusCode).toBe(200);
      const byName = Object.fromEntries(r.json().templates.map((x: { name: string }) => [x.name, x]));
      expect(byName['broken.json']).toMatchObject({ error: 'not valid JSON' });
      expect(byName['flux.json'].workers).toEqual([
        {
          id: 'w1',
          name: 'gpu1',
          connected: true, // linked (the registry's view), though the stand-in link is closed
          needed: [
            'diffusion_models/flux-2-klein-base-9b-fp8.safetensors',
            'text_encoders/qwen_3_8b_fp8mixed.safetensors',
            'vae/flux2-vae.safetensors',
          ],
          optional: ['diffusion_models/flux-2-klein-9b-fp8.safetensors'],
          missing: ['vae/flux2-vae.safetensors'],
          missingOptional: ['diffusion_models/flux-2-klein-9b-fp8.safetensors'],
        },
      ]);
    } finally {
      await t.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
