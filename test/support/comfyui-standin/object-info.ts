/**
 * The node catalogue: ComfyUI v0.3.64's recorded `/object_info` (vendored next to this file),
 * plus the stand-in's own StandinSleep node, with the few lists ComfyUI computes per request
 * (LoadImage's input files, model file combos) filled in from the stand-in's directories.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export type InputSpec = [unknown, Record<string, unknown>?];
export type InputCategory = 'required' | 'optional' | 'hidden';

export interface NodeDef {
  input: Partial<Record<InputCategory, Record<string, InputSpec | string>>>;
  input_order: Partial<Record<InputCategory, string[]>>;
  output: unknown[];
  output_is_list: boolean[];
  output_name: string[];
  name: string;
  display_name: string;
  description: string;
  python_module: string;
  category: string;
  output_node: boolean;
  [extra: string]: unknown;
}

export type ObjectInfo = Record<string, NodeDef>;

const VENDORED_OBJECT_INFO = fileURLToPath(new URL('./vendored/object_info.v0.3.64.json', import.meta.url));

/** The stand-in's long-running node: sleeps, reports progress and previews, passes the image on. */
export const STANDIN_SLEEP_DEF: NodeDef = {
  input: {
    required: { image: ['IMAGE', { tooltip: 'Passed through unchanged.' }] },
    optional: {
      seconds: [
        'FLOAT',
        {
          default: 1,
          min: 0,
          max: 3600,
          step: 0.01,
          tooltip: "How long to 'compute'. When omitted, the stand-in's delayMs knob decides.",
        },
      ],
      steps: [
        'INT',
        { default: 10, min: 1, max: 10000, tooltip: 'Number of progress events (and previews).' },
      ],
      seed: ['INT', { default: 0, min: 0, max: 18446744073709552000, control_after_generate: true }],
    },
  },
  input_order: { required: ['image'], optional: ['seconds', 'steps', 'seed'] },
  output: ['IMAGE'],
  output_is_list: [false],
  output_name: ['IMAGE'],
  name: 'StandinSleep',
  display_name: 'Stand-in Sleep (fake GPU work)',
  description: 'Test-only node of the ComfyUI stand-in: simulates a slow sampler with progress and previews.',
  python_module: 'custom_nodes.comfyui_standin',
  category: 'standin',
  output_node: false,
};

const LORA_LOADERS = ['LoraLoader', 'LoraLoaderModelOnly'];
/** folder_paths.supported_pt_extensions. */
const MODEL_EXTENSIONS = ['.ckpt', '.pt', '.pt2', '.bin', '.pth', '.safetensors', '.pkl', '.sft'];

/** Model files under `dir`, recursively, as `sub/name.safetensors` (ComfyUI's recursive_search). */
export function listModelFiles(dir: string, prefix = ''): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...listModelFiles(join(dir, e.name), rel));
    else if (e.isFile() && MODEL_EXTENSIONS.some((x) => e.name.toLowerCase().endsWith(x))) out.push(rel);
  }
  return out;
}

/** Model-file combos that ComfyUI fills from its models folders. */
const MODEL_COMBOS: Record<string, Record<string, string>> = {
  CheckpointLoaderSimple: { ckpt_name: 'checkpoints' },
  VAELoader: { vae_name: 'vae' },
  LoraLoader: { lora_name: 'loras' },
  LoraLoaderModelOnly: { lora_name: 'loras' },
  CLIPLoader: { clip_name: 'text_encoders' },
  UNETLoader: { unet_name: 'diffusion_models' },
  ControlNetLoader: { control_net_name: 'controlnet' },
};

let vendored: ObjectInfo | undefined;

/** The recorded object_info, parsed once per process (treat as read-only). */
export function recordedObjectInfo(): ObjectInfo {
  vendored ??= JSON.parse(readFileSync(VENDORED_OBJECT_INFO, 'utf8')) as ObjectInfo;
  return vendored;
}

const IMAGE_EXTENSIONS = new Set(['png', 'jpg', 'jpeg', 'gif', 'webp', 'bmp', 'tif', 'tiff', 'avif', 'ico']);

/** LoadImage's list: top-level image files of the input dir, sorted (subfolders are not listed). */
export function listInputImages(inputDir: string): string[] {
  const files = readdirSync(inputDir).filter((name) => {
    const ext = name.split('.').pop()?.toLowerCase() ?? '';
    return IMAGE_EXTENSIONS.has(ext) && statSync(join(inputDir, name), { throwIfNoEntry: false })?.isFile();
  });
  return files.sort();
}

function withComboOptions(def: NodeDef, inputName: string, options: string[]): NodeDef {
  const required = def.input.required ?? {};
  const spec = required[inputName];
  if (!Array.isArray(spec)) return def;
  const extra = spec.length > 1 ? [spec[1]] : [];
  return {
    ...def,
    input: { ...def.input, required: { ...required, [inputName]: [options, ...extra] as InputSpec } },
  };
}

export class NodeCatalog {
  private readonly base: ObjectInfo;

  private readonly staticLoras: string[];

  constructor(
    private readonly inputDir: string,
    models: Record<string, string[]>,
    custom: ObjectInfo = {},
    /** ComfyUI's models/loras folder, listed on each request (files put there later show up). */
    private readonly lorasDir: string | null = null,
  ) {
    this.staticLoras = models.loras ?? [];
    const base: ObjectInfo = { ...recordedObjectInfo(), StandinSleep: STANDIN_SLEEP_DEF, ...custom };
    for (const [cls, inputs] of Object.entries(MODEL_COMBOS)) {
      for (const [inputName, folder] of Object.entries(inputs)) {
        const files = models[folder];
        const def = base[cls];
        if (!files || !def) continue;
        const current = def.input.required?.[inputName];
        const existing = Array.isArray(current) && Array.isArray(current[0]) ? (current[0] as string[]) : [];
        base[cls] = withComboOptions(def, inputName, [...files, ...existing]);
      }
    }
    this.base = base;
  }

  has(classType: string): boolean {
    return Object.hasOwn(this.base, classType);
  }

  /** A node definition as validation sees it (LoadImage's list is computed on demand). */
  get(classType: string): NodeDef | undefined {
    if (!this.has(classType)) return undefined;
    if (classType === 'LoadImage') return this.loadImageDef();
    if (LORA_LOADERS.includes(classType)) return this.loraDef(classType);
    return this.base[classType];
  }

  /** `folder_paths.get_filename_list('loras')`: the given names plus the folder's files, sorted. */
  loraNames(): string[] {
    const found = this.lorasDir ? listModelFiles(this.lorasDir) : [];
    return [...new Set([...this.staticLoras, ...found])].sort();
  }

  private loraDef(classType: string): NodeDef {
    return withComboOptions(this.base[classType]!, 'lora_name', this.loraNames());
  }

  isOutputNode(classType: string): boolean {
    return this.base[classType]?.output_node === true;
  }

  /** The full `/object_info` body. */
  all(): ObjectInfo {
    const out: ObjectInfo = { ...this.base, LoadImage: this.loadImageDef() };
    for (const cls of LORA_LOADERS) if (this.has(cls)) out[cls] = this.loraDef(cls);
    return out;
  }

  private loadImageDef(): NodeDef {
    return withComboOptions(this.base.LoadImage!, 'image', listInputImages(this.inputDir));
  }
}
