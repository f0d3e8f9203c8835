import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { ComfyPrompt } from '../store/types.js';
import { HistorySchema, ObjectInfoSchema, WsMessageSchema, type ObjectInfo } from './protocol.js';
import {
  extractModelRefs,
  extractModels,
  inputReferences,
  namespacedPrefix,
  outputsFromExecuted,
  outputsFromHistory,
  parseAnnotatedName,
  rewriteInputs,
  rewriteOutputPrefixes,
  sanitizePrefix,
  stripOutputNamespace,
  workflowName,
} from './prompt-tools.js';
import { FIXTURES_ROOT } from '../../test/support/fixtures.js';

const FIXTURES = FIXTURES_ROOT;
const readJson = (...p: string[]): unknown => JSON.parse(readFileSync(join(FIXTURES, ...p), 'utf8'));
const objectInfo = ObjectInfoSchema.parse(readJson('comfyui-v0.3.64', 'object_info.json'));

interface UiNode {
  id: number;
  type: string;
  mode?: number;
  widgets_values?: unknown[] | null;
  properties?: { models?: { name: string; directory: string }[] };
}
interface UiWorkflow {
  nodes: UiNode[];
  definitions: { subgraphs: { id: string; name: string; nodes: UiNode[] }[] };
  extra?: { prompt?: ComfyPrompt };
}

/** Widget order of the nodes these tests need (what the frontend reads from object_info). */
const WIDGETS: Record<string, string[]> = {
  UNETLoader: ['unet_name', 'weight_dtype'],
  CLIPLoader: ['clip_name', 'type', 'device'],
  VAELoader: ['vae_name'],
  CheckpointLoaderSimple: ['ckpt_name'],
  LTXAVTextEncoderLoader: ['text_encoder', 'ckpt_name', 'device'],
  LatentUpscaleModelLoader: ['model_name'],
  LTXVAudioVAELoader: ['ckpt_name'],
  LoraLoaderModelOnly: ['lora_name', 'strength_model'],
  SaveImage: ['filename_prefix'],
  SaveVideo: ['filename_prefix', 'format', 'codec'],
};

/**
 * A minimal stand-in for the frontend's graphToPrompt: active nodes of the top level and of each
 * active subgraph instance (ids `<instance>:<inner>`), with the widget values of the nodes above.
 */
function uiToApi(wf: UiWorkflow): { prompt: ComfyPrompt; active: UiNode[] } {
  const prompt: ComfyPrompt = {};
  const active: UiNode[] = [];
  const sgs = new Map(wf.definitions.subgraphs.map((s) => [s.id, s]));
  const add = (id: string, n: UiNode) => {
    if (n.mode === 2 || n.mode === 4 || n.type === 'MarkdownNote') return;
    const sg = sgs.get(n.type);
    if (sg) {
      for (const inner of sg.nodes) add(`${id}:${inner.id}`, inner);
      return;
    }
    const names = WIDGETS[n.type] ?? [];
    const inputs: Record<string, unknown> = {};
    names.forEach((name, i) => (inputs[name] = n.widgets_values?.[i]));
    prompt[id] = { class_type: n.type, inputs };
    active.push(n);
  };
  for (const n of wf.nodes) add(String(n.id), n);
  return { prompt, active };
}

const flux2 = readJson('workflows', 'flux2_klein_9b_text_to_image.json') as UiWorkflow;
const ltx2 = readJson('workflows', 'ltx2_text_to_video.json') as UiWorkflow;
const sdxl = readJson('workflows', 'sdxl_api_format_example.json') as ComfyPrompt;

describe('extractModels', () => {
  it('finds the Flux.2 Klein models of the active subgraph only', () => {
    const { prompt, active } = uiToApi(flux2);
    const models = extractModels(prompt, objectInfo);
    expect(models).toEqual([
      'diffusion_models/flux-2-klein-base-9b-fp8.safetensors',
      'text_encoders/qwen_3_8b_fp8mixed.safetensors',
      'vae/flux2-vae.safetensors',
    ]);
    for (const n of active)
      for (const m of n.properties?.models ?? []) expect(models).toContain(`${m.directory}/${m.name}`);
    expect(extractModels(prompt)).toEqual(models);
  });

  it('finds the LTX-2 models, skipping bypassed LoRAs', () => {
    const { prompt, active } = uiToApi(ltx2);
    const models = extractModels(prompt, objectInfo);
    expect(models).toEqual([
      'text_encoders/gemma_3_12B_it_fp4_mixed.safetensors',
      'checkpoints/ltx-2-19b-dev-fp8.safetensors',
      'latent_upscale_models/ltx-2-spatial-upscaler-x2-1.0.safetensors',
      'loras/ltx-2-19b-distilled-lora-384.safetensors',
    ]);
    for (const n of active)
      for (const m of n.properties?.models ?? []) expect(models).toContain(`${m.directory}/${m.name}`);
    expect(models.join()).not.toContain('dolly');
    const refs = extractModelRefs(prompt);
    expect(
      refs.filter((r) => r.path === 'checkpoints/ltx-2-19b-dev-fp8.safetensors').map((r) => r.classType),
    ).toEqual(['LTXAVTextEncoderLoader', 'LTXVAudioVAELoader', 'CheckpointLoaderSimple']);
  });

  it('reads the API-format prompts (LTX-2 extra.prompt, SDXL example)', () => {
    expect(extractModels(ltx2.extra?.prompt ?? {}, objectInfo)).toEqual([
      'checkpoints/ltx-av-step-1751000_vocoder_24K.safetensors',
    ]);
    expect(extractModels(sdxl)).toEqual(['checkpoints/sd_xl_base_1.0.safetensors']);
  });

  it('uses object_info combos for unknown loaders and ignores non-files', () => {
    const info: ObjectInfo = structuredClone(objectInfo);
    const ckpt = info.CheckpointLoaderSimple?.input.required;
    if (!ckpt) throw new Error('no CheckpointLoaderSimple');
    ckpt.ckpt_name = [['a.safetensors', 'sub/b.safetensors'], {}];
    info.MyLoader = {
      ...structuredClone(info.CheckpointLoaderSimple),
      name: 'MyLoader',
      input: { required: { model: [['a.safetensors', 'sub/b.safetensors']], ckpt_name: ['STRING', {}] } },
    } as ObjectInfo[string];
    const prompt: ComfyPrompt = {
      '1': { class_type: 'MyLoader', inputs: { model: 'sub/b.safetensors', ckpt_name: 'typed.safetensors' } },
      '2': {
        class_type: 'Custom',
        inputs: { lora_name: 'style.safetensors', foo: 'x.safetensors', unet_name: 'not-a-model' },
      },
      '3': { class_type: 'VAELoader', inputs: { vae_name: 'taesdxl' } },
      '4': { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: ['9', 0] } },
      '5': {
        class_type: 'DualCLIPLoader',
        inputs: { clip_name1: 't5.safetensors', clip_name2: 'l.safetensors', type: 'flux' },
      },
    };
    expect(extractModels(prompt, info)).toEqual([
      'checkpoints/sub/b.safetensors',
      'loras/style.safetensors',
      'text_encoders/t5.safetensors',
      'text_encoders/l.safetensors',
    ]);
  });
});

describe('workflowName', () => {
  const wrap = (workflow: unknown) => ({ extra_pnginfo: { workflow }, client_id: 'x' });
  it('names a template after its active subgraph', () => {
    expect(workflowName(wrap(flux2))).toBe('Text to Image (Flux.2 Klein 9B)');
    expect(workflowName(wrap(ltx2))).toBe('Text to Video (LTX 2.0)');
    expect(workflowName(wrap(JSON.stringify(ltx2)))).toBe('Text to Video (LTX 2.0)');
  });
  it('prefers an explicit name and gives null when there is none', () => {
    expect(workflowName(wrap({ ...flux2, extra: { name: '  My\nflow ' } }))).toBe('My flow');
    expect(workflowName(wrap({ nodes: [], extra: {} }))).toBeNull();
    expect(workflowName({ client_id: 'x' })).toBeNull();
    expect(workflowName(undefined)).toBeNull();
    expect(workflowName(wrap('{not json'))).toBeNull();
    expect(workflowName(wrap({ name: 'x'.repeat(500) }))?.length).toBe(200);
  });
});

describe('output prefixes', () => {
  const ns = { user: 'alice', jobId: 'job-1' };
  it('namespaces every save node, keeping the user name part', () => {
    const { prompt } = uiToApi(flux2);
    const video = uiToApi(ltx2).prompt;
    const both: ComfyPrompt = { ...prompt, ...video, v: ltx2.extra?.prompt?.['15'] as ComfyPrompt[string] };
    const { prompt: out, rewritten } = rewriteOutputPrefixes(both, ns);
    expect(rewritten.map((r) => [r.nodeId, r.classType, r.from, r.to])).toEqual([
      ['9', 'SaveImage', 'Flux2-Klein', 'alice/job-1/Flux2-Klein'],
      ['75', 'SaveVideo', 'video/LTX-2', 'alice/job-1/video/LTX-2'],
      ['v', 'VHS_VideoCombine', 'AnimateDiff', 'alice/job-1/AnimateDiff'],
    ]);
    expect(out['75']?.inputs.filename_prefix).toBe('alice/job-1/video/LTX-2');
    expect(both['75']?.inputs.filename_prefix).toBe('video/LTX-2');
  });

  it('keeps only safe characters and never leaves the namespace', () => {
    const cases: [unknown, string][] = [
      ['../../etc/passwd', 'alice/job-1/etc/passwd'],
      ['/abs/path', 'alice/job-1/abs/path'],
      ['C:\\Users\\x', 'alice/job-1/C/Users/x'],
      ['..', 'alice/job-1/ComfyUI'],
      ['', 'alice/job-1/ComfyUI'],
      ['.hidden', 'alice/job-1/hidden'],
      ['a..b/c', 'alice/job-1/a.b/c'],
      ['my pic: 1?', 'alice/job-1/my_pic_1'],
      ['%date:yyyy-MM-dd%/img_%width%x%height%', 'alice/job-1/date_yyyy-MM-dd/img_%width%x%height%'],
      ['Grüße/写真', 'alice/job-1/Grüße/写真'],
      [42, 'alice/job-1/ComfyUI'],
    ];
    for (const [from, to] of cases) expect([from, namespacedPrefix(from, ns)]).toEqual([from, to]);
    for (const p of cases.map(([f]) => namespacedPrefix(f, ns))) {
      expect(p.split('/').slice(0, 2)).toEqual(['alice', 'job-1']);
      expect(p.split('/')).not.toContain('..');
    }
    expect(sanitizePrefix('a//b/./c')).toEqual(['a', 'b', 'c']);
    expect(namespacedPrefix('x', { user: 'bob/../eve', jobId: 'j' })).toBe('bob_._eve/j/x');
    expect(() => namespacedPrefix('x', { user: '../', jobId: 'j' })).toThrow();
  });

  it('resolves a prefix linked from a string node and fills missing optional prefixes', () => {
    const prompt: ComfyPrompt = {
      '1': { class_type: 'PrimitiveString', inputs: { value: 'from-primitive' } },
      '2': { class_type: 'SaveImage', inputs: { images: ['5', 0], filename_prefix: ['1', 0] } },
      '3': { class_type: 'SaveImage', inputs: { images: ['5', 0], filename_prefix: ['5', 0] } },
      '4': { class_type: 'SaveAudio', inputs: { audio: ['6', 0] } },
      '5': { class_type: 'EmptyImage', inputs: { width: 8, height: 8, batch_size: 1, color: 0 } },
    };
    const { prompt: out } = rewriteOutputPrefixes(prompt, { ...ns, objectInfo });
    expect(out['2']?.inputs.filename_prefix).toBe('alice/job-1/from-primitive');
    expect(out['3']?.inputs.filename_prefix).toBe('alice/job-1/ComfyUI');
    expect(out['4']?.inputs.filename_prefix).toBe('alice/job-1/audio/ComfyUI');
    expect(rewriteOutputPrefixes(prompt, ns).prompt['4']?.inputs.filename_prefix).toBeUndefined();
  });

  it('maps saved subfolders back to the user space', () => {
    expect(stripOutputNamespace('alice/job-1/video', ns)).toBe('video');
    expect(stripOutputNamespace('alice/job-1', ns)).toBe('');
    expect(stripOutputNamespace('alice/job-2', ns)).toBeNull();
    expect(stripOutputNamespace('', ns)).toBeNull();
  });
});

describe('input references', () => {
  const prompt: ComfyPrompt = {
    '1': { class_type: 'LoadImage', inputs: { image: 'sub/photo.png' } },
    '2': { class_type: 'LoadImageMask', inputs: { image: 'mask.png', channel: 'alpha' } },
    '3': { class_type: 'LoadImageOutput', inputs: { image: 'ComfyUI_00001_.png [output]' } },
    '4': { class_type: 'LoadVideo', inputs: { file: 'clip.mp4' } },
    '5': { class_type: 'LoadAudio', inputs: { audio: 'a.flac' } },
    '6': { class_type: 'Load3D', inputs: { model_file: '3d/m.glb', image: 'x' } },
    '7': { class_type: 'LoadImage', inputs: { image: ['9', 0] } },
    '8': { class_type: 'VHS_LoadVideo', inputs: { video: 'v.webm', frame_load_cap: 0 } },
  };

  it('finds upload inputs from object_info flags and the known loaders', () => {
    const summary = (refs: ReturnType<typeof inputReferences>) =>
      refs.map((r) => [r.nodeId, r.input, r.kind, r.type, r.subfolder, r.filename]);
    const expected = [
      ['1', 'image', 'image', 'input', 'sub', 'photo.png'],
      ['2', 'image', 'image', 'input', '', 'mask.png'],
      ['3', 'image', 'image', 'output', '', 'ComfyUI_00001_.png'],
      ['4', 'file', 'video', 'input', '', 'clip.mp4'],
      ['5', 'audio', 'audio', 'input', '', 'a.flac'],
      ['6', 'model_file', 'file', 'input', '3d', 'm.glb'],
      ['8', 'video', 'video', 'input', '', 'v.webm'],
    ];
    expect(summary(inputReferences(prompt, objectInfo))).toEqual(expected);
    expect(summary(inputReferences(prompt))).toEqual(expected);
    expect(parseAnnotatedName('a/b/c.png [temp]')).toEqual({
      type: 'temp',
      subfolder: 'a/b',
      filename: 'c.png',
    });
  });

  it('rewrites references by value or by function', () => {
    const byValue = rewriteInputs(prompt, {
      'sub/photo.png': 'u/alice/photo.png',
      'clip.mp4': 'u/alice/clip.mp4',
    });
    expect(byValue.prompt['1']?.inputs.image).toBe('u/alice/photo.png');
    expect(byValue.prompt['4']?.inputs.file).toBe('u/alice/clip.mp4');
    expect(byValue.prompt['2']?.inputs.image).toBe('mask.png');
    expect(prompt['1']?.inputs.image).toBe('sub/photo.png');
    expect(byValue.rewritten.map((r) => r.nodeId)).toEqual(['1', '4']);
    const byMap = rewriteInputs(prompt, new Map([['mask.png', 'm2.png']]));
    expect(byMap.prompt['2']?.inputs.image).toBe('m2.png');
    const byFn = rewriteInputs(
      prompt,
      (r) => (r.type === 'input' ? `j/${r.filename}` : undefined),
      objectInfo,
    );
    expect(byFn.prompt['3']?.inputs.image).toBe('ComfyUI_00001_.png [output]');
    expect(byFn.prompt['6']?.inputs.model_file).toBe('j/m.glb');
    expect(byFn.prompt['7']?.inputs.image).toEqual(['9', 0]);
  });
});

describe('outputs', () => {
  const t = readJson('comfyui-v0.3.64', 'ws_transcript_modelfree.json') as {
    messages: { kind: string; data: unknown }[];
  };
  const executed = t.messages
    .filter((m) => m.kind === 'text')
    .map((m) => WsMessageSchema.parse(m.data))
    .filter((m) => m.type === 'executed');

  it('reads files and other entries from executed messages', () => {
    expect(executed.flatMap((m) => outputsFromExecuted(m))).toEqual([
      { nodeId: '4', filename: 'ComfyUI_temp_qjgao_00001_.png', subfolder: '', type: 'temp', kind: 'images' },
      { nodeId: '3', filename: 'ci_00001_.png', subfolder: '', type: 'output', kind: 'images' },
    ]);
    const first = executed[0];
    if (first?.type !== 'executed') throw new Error('no executed message');
    expect(outputsFromExecuted(first.data)).toHaveLength(1);
    expect(
      outputsFromExecuted({
        node: '9',
        prompt_id: 'p',
        output: {
          text: ['hello'],
          animated: [true],
          gifs: [{ filename: 'a.webp', subfolder: 'alice/j', type: 'output', format: 'image/webp' }],
          audio: [{ filename: 'x.flac', subfolder: '', type: 'temp' }],
          images: [{ filename: 'in.png', subfolder: '', type: 'input' }],
        },
      }),
    ).toEqual([
      // Every entry, in order: non-file entries carry the item as ComfyUI reported it, and a
      // file's further fields travel with it.
      { nodeId: '9', filename: '', subfolder: '', type: 'output', kind: 'text', value: 'hello' },
      { nodeId: '9', filename: '', subfolder: '', type: 'output', kind: 'animated', value: true },
      {
        nodeId: '9',
        filename: 'a.webp',
        subfolder: 'alice/j',
        type: 'output',
        kind: 'gifs',
        extra: { format: 'image/webp' },
      },
      { nodeId: '9', filename: 'x.flac', subfolder: '', type: 'temp', kind: 'audio' },
      {
        nodeId: '9',
        filename: '',
        subfolder: '',
        type: 'output',
        kind: 'images',
        value: { filename: 'in.png', subfolder: '', type: 'input' },
      },
    ]);
  });

  it('reads files and other entries from history entries', () => {
    const history = HistorySchema.parse(readJson('comfyui-v0.3.64', 'history_full.json'));
    const entry = history['bfd8ecf8-c0f4-4f77-92de-01f4edffe7ce'];
    if (!entry) throw new Error('missing entry');
    expect(
      outputsFromHistory(entry)
        .map((o) => `${o.nodeId}:${o.type}:${o.filename}`)
        .sort(),
    ).toEqual(['3:output:ci_00001_.png', '4:temp:ComfyUI_temp_qjgao_00001_.png']);
    const text = history['ac280ce4-d1e3-4bfd-a1fc-bc82e3c655c5'];
    if (!text) throw new Error('missing entry');
    // PreviewAny's text is no file, but it is part of the output.
    expect(outputsFromHistory(text)).toEqual([
      { nodeId: '3', filename: '', subfolder: '', type: 'output', kind: 'text', value: '40' },
    ]);
  });
});
