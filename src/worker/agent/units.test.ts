/** The agent's pure pieces and the `worker` command's argument handling. */
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { resolveWorkerArgs } from '../../cli/commands/worker.js';
import { backoffDelay } from './backoff.js';
import { canonicalJson } from './canonical-json.js';
import { forServer, workerSocketUrl } from './control-link.js';
import { buildEnvSnapshot, envHash, type EnvSources } from './env-snapshot.js';
import { outputUploadPath } from './files.js';

describe('backoffDelay', () => {
  it('grows exponentially with jitter between half and all of the ceiling, up to the cap', () => {
    const opts = { baseMs: 100, maxMs: 1000 };
    expect(backoffDelay(0, opts, () => 0)).toBe(50);
    expect(backoffDelay(0, opts, () => 1)).toBe(100);
    expect(backoffDelay(3, opts, () => 0)).toBe(400);
    expect(backoffDelay(3, opts, () => 1)).toBe(800);
    expect(backoffDelay(10, opts, () => 1)).toBe(1000);
    expect(backoffDelay(1000, opts, () => 0.5)).toBe(750);
  });
});

describe('forServer', () => {
  it('sends non-file output entries and file fields only to a server that records them', () => {
    const msg = {
      type: 'job_completed' as const,
      jobId: 'j',
      attempt: 1,
      outputs: [
        {
          nodeId: '3',
          filename: 'a_00001_.mp4',
          subfolder: 'j',
          type: 'output' as const,
          kind: 'gifs',
          extra: { format: 'video/h264-mp4' },
        },
        { nodeId: '3', filename: '', subfolder: '', type: 'output' as const, kind: 'animated', value: true },
      ],
    };
    expect(forServer(msg, true)).toBe(msg);
    // An older control plane's schema refuses both: it gets the files, as it always did.
    expect(forServer(msg, false)).toEqual({
      ...msg,
      outputs: [{ nodeId: '3', filename: 'a_00001_.mp4', subfolder: 'j', type: 'output', kind: 'gifs' }],
    });
  });
});

describe('canonicalJson', () => {
  it('sorts keys at every level, keeps array order, drops undefined', () => {
    expect(canonicalJson({ b: 1, a: { d: [3, { z: 1, y: 2 }], c: undefined } })).toBe(
      '{"a":{"d":[3,{"y":2,"z":1}]},"b":1}',
    );
    expect(canonicalJson({ x: 'é', n: null })).toBe('{"n":null,"x":"é"}');
  });
});

describe('env snapshot hash', () => {
  const sources = (over: Partial<EnvSources> = {}): EnvSources => ({
    systemStats: {
      system: { comfyui_version: '0.3.64', ram_total: 100, ram_free: 50, argv: ['main.py'] },
      devices: [
        {
          name: 'cuda:0',
          type: 'cuda',
          vram_total: 80,
          vram_free: 70,
          torch_vram_total: 80,
          torch_vram_free: 60,
        },
      ],
    },
    objectInfo: { SaveImage: { name: 'SaveImage' }, EmptyImage: { name: 'EmptyImage' } },
    embeddings: ['b', 'a'],
    models: { loras: ['x.safetensors'], checkpoints: ['b.safetensors', 'a.safetensors'] },
    extensions: ['/extensions/core/x.js'],
    ...over,
  });

  it('ignores free memory and listing order, and changes when the environment does', () => {
    const base = envHash(buildEnvSnapshot(sources()));
    const busier = sources();
    (busier.systemStats.system as Record<string, unknown>).ram_free = 1;
    (busier.systemStats.devices as Record<string, unknown>[])[0]!.vram_free = 2;
    (busier.systemStats.devices as Record<string, unknown>[])[0]!.torch_vram_free = 3;
    expect(envHash(buildEnvSnapshot(busier))).toBe(base);
    const reordered = sources({
      embeddings: ['a', 'b'],
      models: { checkpoints: ['a.safetensors', 'b.safetensors'], loras: ['x.safetensors'] },
    });
    expect(envHash(buildEnvSnapshot(reordered))).toBe(base);
    const moreModels = sources({
      models: { checkpoints: ['a.safetensors', 'b.safetensors', 'c.safetensors'], loras: ['x.safetensors'] },
    });
    expect(envHash(buildEnvSnapshot(moreModels))).not.toBe(base);
    const snapshot = buildEnvSnapshot(sources());
    expect(snapshot.comfyuiVersion).toBe('0.3.64');
    expect(JSON.stringify(snapshot.systemStats)).not.toMatch(/_free/);
  });
});

describe('workerSocketUrl', () => {
  it('maps the server URL to its worker socket, keeping a base path', () => {
    expect(workerSocketUrl('http://cp:8080')).toBe('ws://cp:8080/worker/v1/ws');
    expect(workerSocketUrl('https://x.org/workshop/')).toBe('wss://x.org/workshop/worker/v1/ws');
    expect(workerSocketUrl('wss://x.org')).toBe('wss://x.org/worker/v1/ws');
  });
});

describe('outputUploadPath', () => {
  const ns = { user: 'alice', jobId: 'job-1' };
  it('drops the user part of the namespace and keeps the job part', () => {
    expect(outputUploadPath({ subfolder: 'alice/job-1', filename: 'ci_00001_.png' }, ns)).toBe(
      'job-1/ci_00001_.png',
    );
    expect(outputUploadPath({ subfolder: 'alice/job-1/videos/x', filename: 'v.mp4' }, ns)).toBe(
      'job-1/videos/x/v.mp4',
    );
  });
  it('files outputs outside the namespace (previews, nodes without a prefix) under the job too', () => {
    expect(outputUploadPath({ subfolder: '', filename: 'ComfyUI_temp_abc_00001_.png' }, ns)).toBe(
      'job-1/ComfyUI_temp_abc_00001_.png',
    );
    expect(outputUploadPath({ subfolder: 'other', filename: 'f.png' }, ns)).toBe('job-1/other/f.png');
  });
});

describe('comfy-multi worker arguments', () => {
  const env = {
    COMFY_MULTI_SERVER: 'http://cp:8080',
    COMFY_MULTI_TOKEN: 'env-token-secret',
    HOSTNAME: 'gpu-box',
  };

  it('takes flags over environment variables, with defaults', () => {
    const r = resolveWorkerArgs({ server: 'https://flag.example' }, env);
    expect(r).toEqual({
      ok: true,
      args: {
        server: 'https://flag.example',
        token: 'env-token-secret',
        comfyui: 'http://127.0.0.1:8188',
        name: 'gpu-box',
        prefetch: 1,
        logLevel: 'info',
        graceSeconds: 30,
        frontendMirror: true,
        templateMirror: true,
        exitWhenIdle: 0,
      },
    });
    const fromEnv = resolveWorkerArgs(
      {},
      { ...env, COMFYUI_URL: 'http://10.0.0.2:8188', WORKER_NAME: 'h100-a', WORKER_PREFETCH: '2' },
    );
    expect(fromEnv.ok && fromEnv.args).toMatchObject({
      comfyui: 'http://10.0.0.2:8188',
      name: 'h100-a',
      prefetch: 2,
    });
  });

  it('takes the frontend folder and the mirror switch from flags or environment', () => {
    const dir = fileURLToPath(new URL('../../../test/fixtures/mini-frontend', import.meta.url));
    const fromEnv = resolveWorkerArgs(
      {},
      { ...env, COMFYUI_FRONTEND_DIR: dir, WORKER_FRONTEND_MIRROR: 'FALSE' },
    );
    expect(fromEnv.ok && fromEnv.args).toMatchObject({ frontendDir: dir, frontendMirror: false });
    const flags = resolveWorkerArgs({ frontendMirror: false }, { ...env, WORKER_FRONTEND_MIRROR: 'true' });
    expect(flags.ok && flags.args.frontendMirror).toBe(false);
    const on = resolveWorkerArgs({ frontendMirror: true }, { ...env, WORKER_FRONTEND_MIRROR: 'yes' });
    expect(on.ok && on.args.frontendMirror).toBe(true);
    const noTemplates = resolveWorkerArgs(
      { templateMirror: false },
      { ...env, WORKER_TEMPLATE_MIRROR: 'true' },
    );
    expect(noTemplates.ok && noTemplates.args.templateMirror).toBe(false);
    const envOff = resolveWorkerArgs({}, { ...env, WORKER_TEMPLATE_MIRROR: 'no' });
    expect(envOff.ok && envOff.args).toMatchObject({ templateMirror: false, frontendMirror: true });
    const bad = resolveWorkerArgs(
      { frontendDir: '/definitely/not/here' },
      { ...env, WORKER_FRONTEND_MIRROR: 'sometimes' },
    );
    expect(!bad.ok && bad.errors).toEqual([
      '--frontend-dir (COMFYUI_FRONTEND_DIR) must be a folder holding index.html',
      'WORKER_FRONTEND_MIRROR must be true or false',
    ]);
  });

  it.each([
    [
      'modelsDir',
      'COMFYUI_MODELS_DIR',
      "--models-dir (COMFYUI_MODELS_DIR) must be ComfyUI's models folder (the one holding checkpoints/, loras/, ...)",
    ],
    [
      'outputDir',
      'COMFYUI_OUTPUT_DIR',
      "--output-dir (COMFYUI_OUTPUT_DIR) must be ComfyUI's output folder (its --output-directory, default <ComfyUI>/output)",
    ],
  ] as const)(
    "takes ComfyUI's %s from its flag or %s, and refuses one that is not a folder",
    (key, variable, error) => {
      const dir = fileURLToPath(new URL('../../../test/fixtures', import.meta.url));
      const fromEnv = resolveWorkerArgs({}, { ...env, [variable]: dir });
      expect(fromEnv.ok && fromEnv.args[key]).toBe(dir);
      const none = resolveWorkerArgs({}, env);
      expect(none.ok && none.args[key]).toBeUndefined();
      const bad = resolveWorkerArgs({ [key]: '/definitely/not/here' }, env);
      expect(!bad.ok && bad.errors).toEqual([error]);
    },
  );

  it('names every bad field and never echoes the token', () => {
    const r = resolveWorkerArgs(
      { prefetch: '12', comfyui: 'not a url', name: 'bad name!' },
      { COMFY_MULTI_TOKEN: 'super-secret-token' },
    );
    expect(r.ok).toBe(false);
    const errors = r.ok ? [] : r.errors;
    expect(errors.some((e) => e.includes('--server'))).toBe(true);
    expect(errors.some((e) => e.includes('--comfyui'))).toBe(true);
    expect(errors.some((e) => e.includes('--name'))).toBe(true);
    expect(errors.some((e) => e.includes('--prefetch'))).toBe(true);
    expect(errors.join('\n')).not.toContain('super-secret-token');
    const noToken = resolveWorkerArgs({ server: 'http://cp' }, {});
    expect(!noToken.ok && noToken.errors).toEqual(['--token (COMFY_MULTI_TOKEN) is required']);
  });
});
