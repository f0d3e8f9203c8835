/**
 * Which model folder a loader node's input reads from (ComfyUI's `folder_paths` names), for
 * model affinity: `checkpoints/<name>`, `diffusion_models/<name>`, ...
 *
 * Three sources, strongest first:
 * 1. {@link LOADER_INPUT_FOLDERS}: ComfyUI's core loaders (v0.3.64 plus the LTX-2 / latent
 *    upscale loaders) and the common GGUF loaders, read off their `get_filename_list(folder)`.
 * 2. With `/object_info`: a combo whose option list equals a known loader's list reads the same
 *    folder (custom loaders mostly reuse `get_filename_list`).
 * 3. {@link INPUT_NAME_FOLDERS}: conventional input names (`ckpt_name`, `lora_name`, ...) on
 *    unknown nodes, when the value looks like a model file.
 */

export const LOADER_INPUT_FOLDERS: Readonly<Record<string, Readonly<Record<string, string>>>> = {
  CheckpointLoaderSimple: { ckpt_name: 'checkpoints' },
  CheckpointLoader: { config_name: 'configs', ckpt_name: 'checkpoints' },
  ImageOnlyCheckpointLoader: { ckpt_name: 'checkpoints' },
  unCLIPCheckpointLoader: { ckpt_name: 'checkpoints' },
  CreateHookModelAsLora: { ckpt_name: 'checkpoints' },
  CreateHookModelAsLoraModelOnly: { ckpt_name: 'checkpoints' },
  LTXVAudioVAELoader: { ckpt_name: 'checkpoints' },
  LTXAVTextEncoderLoader: { text_encoder: 'text_encoders', ckpt_name: 'checkpoints' },
  DiffusersLoader: { model_path: 'diffusers' },
  VAELoader: { vae_name: 'vae' },
  LoraLoader: { lora_name: 'loras' },
  LoraLoaderModelOnly: { lora_name: 'loras' },
  CreateHookLora: { lora_name: 'loras' },
  CreateHookLoraModelOnly: { lora_name: 'loras' },
  TrainLoraNode: { existing_lora: 'loras' },
  UNETLoader: { unet_name: 'diffusion_models' },
  UnetLoaderGGUF: { unet_name: 'diffusion_models' },
  UnetLoaderGGUFAdvanced: { unet_name: 'diffusion_models' },
  CLIPLoader: { clip_name: 'text_encoders' },
  CLIPLoaderGGUF: { clip_name: 'text_encoders' },
  DualCLIPLoader: { clip_name1: 'text_encoders', clip_name2: 'text_encoders' },
  DualCLIPLoaderGGUF: { clip_name1: 'text_encoders', clip_name2: 'text_encoders' },
  TripleCLIPLoader: { clip_name1: 'text_encoders', clip_name2: 'text_encoders', clip_name3: 'text_encoders' },
  TripleCLIPLoaderGGUF: {
    clip_name1: 'text_encoders',
    clip_name2: 'text_encoders',
    clip_name3: 'text_encoders',
  },
  QuadrupleCLIPLoader: {
    clip_name1: 'text_encoders',
    clip_name2: 'text_encoders',
    clip_name3: 'text_encoders',
    clip_name4: 'text_encoders',
  },
  CLIPVisionLoader: { clip_name: 'clip_vision' },
  ControlNetLoader: { control_net_name: 'controlnet' },
  DiffControlNetLoader: { control_net_name: 'controlnet' },
  StyleModelLoader: { style_model_name: 'style_models' },
  GLIGENLoader: { gligen_name: 'gligen' },
  HypernetworkLoader: { hypernetwork_name: 'hypernetworks' },
  UpscaleModelLoader: { model_name: 'upscale_models' },
  LatentUpscaleModelLoader: { model_name: 'latent_upscale_models' },
  PhotoMakerLoader: { photomaker_model_name: 'photomaker' },
  ModelPatchLoader: { name: 'model_patches' },
  AudioEncoderLoader: { audio_encoder_name: 'audio_encoders' },
};

/** Conventional input names of model loaders, for nodes not in {@link LOADER_INPUT_FOLDERS}. */
export const INPUT_NAME_FOLDERS: readonly (readonly [RegExp, string])[] = [
  [/^ckpt_name$/, 'checkpoints'],
  [/^unet_name$/, 'diffusion_models'],
  [/^vae_name$/, 'vae'],
  [/^lora_name(_\d+)?$/, 'loras'],
  [/^clip_name\d*$/, 'text_encoders'],
  [/^text_encoder(_name)?\d*$/, 'text_encoders'],
  [/^clip_vision(_name)?$/, 'clip_vision'],
  [/^control_net_name$/, 'controlnet'],
  [/^style_model_name$/, 'style_models'],
  [/^gligen_name$/, 'gligen'],
  [/^hypernetwork_name$/, 'hypernetworks'],
  [/^upscale_model(_name)?$/, 'upscale_models'],
  [/^audio_encoder_name$/, 'audio_encoders'],
];

/** `folder_paths.supported_pt_extensions` plus GGUF and ONNX. */
export const MODEL_FILE_EXTENSIONS: readonly string[] = [
  '.safetensors',
  '.sft',
  '.ckpt',
  '.pt',
  '.pt2',
  '.pth',
  '.bin',
  '.pkl',
  '.gguf',
  '.onnx',
];

/** Combo values that name no file: placeholders and VAELoader's built-in decoders. */
export const NON_FILE_VALUES: ReadonlySet<string> = new Set([
  '',
  'None',
  'none',
  '[None]',
  'pixel_space',
  'taesd',
  'taesdxl',
  'taesd3',
  'taef1',
]);

export function looksLikeModelFile(name: string): boolean {
  const lower = name.toLowerCase();
  return MODEL_FILE_EXTENSIONS.some((ext) => lower.endsWith(ext));
}

export function folderForInputName(input: string): string | null {
  for (const [re, folder] of INPUT_NAME_FOLDERS) if (re.test(input)) return folder;
  return null;
}
