import { describe, expect, it } from 'vitest';
import type { ComfyPrompt } from '../store/types.js';
import { missingModelsError, modelRequirements, requiredModelPaths } from './model-requirements.js';
import type { ObjectInfo } from './protocol.js';

const prompt: ComfyPrompt = {
  '1': { class_type: 'UNETLoader', inputs: { unet_name: 'flux.safetensors', weight_dtype: 'default' } },
  '2': { class_type: 'VAELoader', inputs: { vae_name: 'taesd' } },
  '3': { class_type: 'MyLoader', inputs: { model: 'sub/x.gguf' } },
  '4': { class_type: 'PreviewAny', inputs: { source: ['1', 0] } },
  '5': { class_type: 'LoraLoaderModelOnly', inputs: { lora_name: 'dangling.safetensors', model: ['1', 0] } },
};
/** A custom loader whose combo lists the same files as UNETLoader's: the same folder. */
const objectInfo = {
  UNETLoader: { input: { required: { unet_name: [['flux.safetensors', 'sub/x.gguf'], {}] } } },
  MyLoader: { input: { required: { model: [['flux.safetensors', 'sub/x.gguf'], {}] } } },
} as unknown as ObjectInfo;

describe('modelRequirements', () => {
  it('lists each loader input with its folder, by object_info where it is known', () => {
    expect(modelRequirements(prompt, objectInfo).map((r) => [r.nodeId, r.input, r.path])).toEqual([
      ['1', 'unet_name', 'diffusion_models/flux.safetensors'],
      ['3', 'model', 'diffusion_models/sub/x.gguf'],
      ['5', 'lora_name', 'loras/dangling.safetensors'],
    ]);
    expect(requiredModelPaths(prompt)).toEqual([
      'diffusion_models/flux.safetensors',
      'loras/dangling.safetensors',
    ]);
  });
});

describe('missingModelsError', () => {
  const holder = { models: { diffusion_models: ['flux.safetensors'], loras: [] } };

  it('accepts everything while no worker is known', () => {
    expect(missingModelsError(prompt, [], { objectInfo })).toBeNull();
  });

  it("answers ComfyUI's value_not_in_list for a file no worker holds, on the nodes the outputs run", () => {
    const body = missingModelsError(prompt, [holder], { objectInfo, outputs: ['4'] });
    // Node 5 feeds no output: not checked, as ComfyUI validates only what runs.
    expect(body).toEqual(null);
    const all = missingModelsError(prompt, [holder], { objectInfo });
    expect(Object.keys(all!.node_errors)).toEqual(['3', '5']);
    expect(all!.node_errors['3']!.errors[0]).toEqual({
      type: 'value_not_in_list',
      message: 'Value not in list',
      details: "model: 'sub/x.gguf' not in ['flux.safetensors']",
      extra_info: {
        input_name: 'model',
        input_config: [['flux.safetensors'], {}],
        received_value: 'sub/x.gguf',
      },
    });
  });

  it('counts a file any worker holds, in its folder list or its loader combo', () => {
    const other = { models: {}, objectInfo: { MyLoader: objectInfo.MyLoader } as ObjectInfo };
    expect(missingModelsError(prompt, [holder, other], { objectInfo, outputs: ['4'] })).toBeNull();
    const withLora = { models: { loras: ['dangling.safetensors'] } };
    expect(missingModelsError(prompt, [holder, other, withLora], { objectInfo })).toBeNull();
  });
});
