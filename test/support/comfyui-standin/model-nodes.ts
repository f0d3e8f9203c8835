/**
 * Loader nodes the stand-in "runs" without a GPU, so a test can follow a model file from the
 * control plane into ComfyUI's folders: `CheckpointLoaderSimple` hands on a placeholder model
 * naming its checkpoint, and `LoraLoader` / `LoraLoaderModelOnly` read the LoRA file from the
 * models/loras folder (failing like ComfyUI when it is absent) and add its name, size and sha256
 * to the model they pass on. `PreviewAny` of such a model shows that record as text, which is
 * how a test sees which bytes ComfyUI really loaded.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join, resolve, sep } from 'node:path';
import { NodeError, registerNodes, type NodeContext } from './nodes.js';

interface FakeModel {
  checkpoint: string;
  /** What was loaded (not the path: a real ComfyUI's model shows no file names either). */
  loras: { size: number; sha256: string; strength: number }[];
}

function isFakeModel(v: unknown): v is FakeModel {
  return typeof v === 'object' && v !== null && Array.isArray((v as FakeModel).loras);
}

function loadLora(name: string, ctx: NodeContext): { size: number; sha256: string } {
  const root = resolve(ctx.dirs.models, 'loras');
  const path = resolve(join(root, name));
  if (!path.startsWith(root + sep)) throw new NodeError('FileNotFoundError', `lora_name: ${name}`);
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch {
    // folder_paths.get_full_path_or_raise
    throw new NodeError('FileNotFoundError', `Model in folder 'loras' with filename '${name}' not found.`);
  }
  return { size: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') };
}

function withLora(model: unknown, inputs: Record<string, unknown>, ctx: NodeContext, strengthKey: string) {
  if (!isFakeModel(model))
    throw new NodeError('AttributeError', "'NoneType' object has no attribute 'clone'");
  const lora = loadLora(String(inputs.lora_name), ctx);
  return { ...model, loras: [...model.loras, { ...lora, strength: Number(inputs[strengthKey]) }] };
}

registerNodes({
  CheckpointLoaderSimple: (inputs) => {
    const model: FakeModel = { checkpoint: String(inputs.ckpt_name), loras: [] };
    return { outputs: [model, { clip: model.checkpoint }, { vae: model.checkpoint }] };
  },
  LoraLoaderModelOnly: (inputs, ctx) => ({
    outputs: [withLora(inputs.model, inputs, ctx, 'strength_model')],
  }),
  LoraLoader: (inputs, ctx) => ({
    outputs: [withLora(inputs.model, inputs, ctx, 'strength_model'), inputs.clip],
  }),
});
