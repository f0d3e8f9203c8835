import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { WORKFLOW_FIXTURES } from '../../test/support/fixtures.js';
import { missingModels, modelsOfWorkflow } from './workflow-models.js';

const workflow = (name: string): unknown => JSON.parse(readFileSync(`${WORKFLOW_FIXTURES}/${name}`, 'utf8'));

describe('modelsOfWorkflow', () => {
  it('lists the Flux.2 Klein workflow files, subgraphs included', () => {
    expect(modelsOfWorkflow(workflow('flux2_klein_9b_text_to_image.json'))).toEqual([
      'diffusion_models/flux-2-klein-9b-fp8.safetensors',
      'diffusion_models/flux-2-klein-base-9b-fp8.safetensors',
      'text_encoders/qwen_3_8b_fp8mixed.safetensors',
      'vae/flux2-vae.safetensors',
    ]);
  });

  it('lists the LTX-2 workflow files, by the folder each loader reads', () => {
    expect(modelsOfWorkflow(workflow('ltx2_text_to_video.json'))).toEqual([
      'checkpoints/ltx-2-19b-dev-fp8.safetensors',
      'latent_upscale_models/ltx-2-spatial-upscaler-x2-1.0.safetensors',
      'loras/ltx-2-19b-distilled-lora-384.safetensors',
      'loras/ltx-2-19b-lora-camera-control-dolly-left.safetensors',
      'text_encoders/gemma_3_12B_it_fp4_mixed.safetensors',
    ]);
  });

  it('reads API-format prompts, bare or wrapped', () => {
    const prompt = {
      '4': { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: 'sdxl.safetensors' } },
      '5': { class_type: 'EmptyLatentImage', inputs: { width: 64, height: 64, batch_size: 1 } },
    };
    expect(modelsOfWorkflow(prompt)).toEqual(['checkpoints/sdxl.safetensors']);
    expect(modelsOfWorkflow({ prompt })).toEqual(['checkpoints/sdxl.safetensors']);
  });

  it('finds no models in what is not a workflow', () => {
    for (const v of [null, 3, 'x', [], {}, { nodes: 'no' }, { a: { b: 1 } }])
      expect(modelsOfWorkflow(v)).toEqual([]);
  });
});

describe('missingModels', () => {
  it('names the files a worker lacks, subfolders included', () => {
    const have = { checkpoints: ['a.safetensors', 'ltx/b.safetensors'], loras: [] };
    expect(
      missingModels(
        ['checkpoints/a.safetensors', 'checkpoints/ltx/b.safetensors', 'loras/c.safetensors', 'vae/d.sft'],
        have,
      ),
    ).toEqual(['loras/c.safetensors', 'vae/d.sft']);
  });
});
