/**
 * "The model-free prompt" shared by the tests: EmptyImage → ImageInvert → SaveImage, which the
 * ComfyUI stand-in (and a real ComfyUI without models) can run. Options add the stand-in's slow
 * node (for queues, progress, previews and interrupts) or start from LoadImage instead.
 */
import type { ApiPrompt } from './comfyui-standin/types.js';

export type { ApiPrompt };

/** Node ids are stable across variants: tests can rely on SaveImage being node "3". */
export const MODEL_FREE_NODES = { source: '1', invert: '2', save: '3', sleep: '5' } as const;

export interface ModelFreePromptOptions {
  width?: number;
  height?: number;
  batchSize?: number;
  /** 0xRRGGBB of the EmptyImage. Change it to defeat ComfyUI's cache between two runs. */
  color?: number;
  /** SaveImage prefix (may contain `/` subfolders). Default `ci`. */
  filenamePrefix?: string;
  /**
   * Insert StandinSleep between ImageInvert and SaveImage (stand-in only). `true` uses the
   * stand-in's delayMs; `seed` changes the cache key without changing the work.
   */
  sleep?: true | { seconds?: number; steps?: number; seed?: number };
  /** Start from LoadImage of this input file (e.g. `user001/x.png`) instead of EmptyImage. */
  loadImage?: string;
}

/** ComfyUI's model-free image source: `batch` images of one colour (0xRRGGBB). */
function emptyImage(width: number, height: number, batch: number, color: number) {
  return { class_type: 'EmptyImage', inputs: { width, height, batch_size: batch, color } };
}

export function modelFreePrompt(opts: ModelFreePromptOptions = {}): ApiPrompt {
  const n = MODEL_FREE_NODES;
  const source = opts.loadImage
    ? { class_type: 'LoadImage', inputs: { image: opts.loadImage } }
    : emptyImage(opts.width ?? 64, opts.height ?? 48, opts.batchSize ?? 1, opts.color ?? 0x336699);
  const prompt: ApiPrompt = {
    [n.source]: source,
    [n.invert]: { class_type: 'ImageInvert', inputs: { image: [n.source, 0] } },
    [n.save]: {
      class_type: 'SaveImage',
      inputs: { images: [n.invert, 0], filename_prefix: opts.filenamePrefix ?? 'ci' },
    },
  };
  if (opts.sleep) {
    const sleep = opts.sleep === true ? {} : opts.sleep;
    const inputs: Record<string, unknown> = { image: [n.invert, 0] };
    if (sleep.seconds !== undefined) inputs.seconds = sleep.seconds;
    if (sleep.steps !== undefined) inputs.steps = sleep.steps;
    if (sleep.seed !== undefined) inputs.seed = sleep.seed;
    prompt[n.sleep] = { class_type: 'StandinSleep', inputs };
    prompt[n.save]!.inputs.images = [n.sleep, 0];
  }
  return prompt;
}

export interface VideoPromptOptions {
  width?: number;
  height?: number;
  /** Frames of the clip (the EmptyImage batch). */
  frames?: number;
  fps?: number;
  /** 0xRRGGBB of the EmptyImage. */
  color?: number;
  /** SaveVideo prefix (may contain `/` subfolders). Default `video/ComfyUI`. */
  filenamePrefix?: string;
}

/**
 * The model-free video workflow, API format: EmptyImage batch (node "1") → CreateVideo ("2") →
 * SaveVideo ("3"), which a real ComfyUI 0.3.64 runs without models (and the stand-in too).
 */
export function videoPrompt(opts: VideoPromptOptions = {}): ApiPrompt {
  return {
    '1': emptyImage(opts.width ?? 64, opts.height ?? 64, opts.frames ?? 24, opts.color ?? 0),
    '2': { class_type: 'CreateVideo', inputs: { images: ['1', 0], fps: opts.fps ?? 8 } },
    '3': {
      class_type: 'SaveVideo',
      inputs: {
        video: ['2', 0],
        filename_prefix: opts.filenamePrefix ?? 'video/ComfyUI',
        format: 'auto',
        codec: 'auto',
      },
    },
  };
}

export interface EmptyLatentWorkflowOptions {
  width?: number;
  height?: number;
  /** The batch size widget; tests vary it (or the width) to get distinct workflow files. */
  batchSize?: number;
}

/**
 * A one-node UI-format (LiteGraph) workflow, as JSON text: EmptyLatentImage, which the recorded
 * object_info knows, so the control plane converts it without models. What the template tests
 * upload and the stand-in's template library serves.
 */
export function emptyLatentWorkflow(opts: EmptyLatentWorkflowOptions = {}): string {
  return JSON.stringify({
    last_node_id: 1,
    last_link_id: 0,
    nodes: [
      {
        id: 1,
        type: 'EmptyLatentImage',
        pos: [0, 0],
        size: [300, 100],
        flags: {},
        order: 0,
        mode: 0,
        inputs: [],
        outputs: [{ name: 'LATENT', type: 'LATENT', links: null }],
        properties: {},
        widgets_values: [opts.width ?? 512, opts.height ?? 512, opts.batchSize ?? 1],
      },
    ],
    links: [],
    groups: [],
    config: {},
    extra: {},
    version: 0.4,
  });
}

/**
 * A model-free prompt that keeps a real ComfyUI busy (where the stand-in's sleep node does not
 * exist): a 2048² EmptyImage (node "1") scaled between 4096² and 2048² `hops` times, then saved
 * (SaveImage is node "3").
 */
export function scalingPrompt(opts: { hops: number; color: number; filenamePrefix: string }): ApiPrompt {
  const prompt: ApiPrompt = { '1': emptyImage(2048, 2048, 1, opts.color) };
  let last = '1';
  for (let i = 0; i < opts.hops; i++) {
    const id = String(10 + i);
    const size = i % 2 === 0 ? 4096 : 2048;
    prompt[id] = {
      class_type: 'ImageScale',
      inputs: { image: [last, 0], upscale_method: 'lanczos', width: size, height: size, crop: 'disabled' },
    };
    last = id;
  }
  prompt['3'] = {
    class_type: 'SaveImage',
    inputs: { images: [last, 0], filename_prefix: opts.filenamePrefix },
  };
  return prompt;
}
