/**
 * ComfyUI's HTTP API as zod schemas and TypeScript types: API-format prompts, `POST /prompt` and
 * its error bodies, the queue, history, system stats and uploads. Part of `protocol.ts` (which
 * re-exports it, and whose header says how the schemas are checked and why they are loose).
 */
import { z } from 'zod';

// ---------------------------------------------------------------------------------------------
// Prompts (API format)
// ---------------------------------------------------------------------------------------------

/** A link to another node's output: `[nodeId, outputIndex]`. */
export const LinkSchema = z.tuple([z.string(), z.number().int().nonnegative()]);
export type Link = [string, number];

/**
 * ComfyUI's `is_link`: a 2-element list whose first element is a string and second a number.
 * (ComfyUI accepts a float index here; it then fails later when indexing, as we do.)
 */
export function isLink(value: unknown): value is Link {
  return (
    Array.isArray(value) && value.length === 2 && typeof value[0] === 'string' && typeof value[1] === 'number'
  );
}

/** One node of an API-format prompt. `inputs` values are literals or {@link Link}s. */
export const PromptNodeSchema = z.looseObject({
  class_type: z.string(),
  inputs: z.record(z.string(), z.unknown()),
  _meta: z.looseObject({ title: z.string().optional() }).optional(),
});
export type PromptNode = z.infer<typeof PromptNodeSchema>;

/** An API-format prompt: `{[nodeId]: {class_type, inputs, _meta?}}`. */
export const ApiPromptSchema = z.record(z.string(), PromptNodeSchema);
export type ApiPrompt = z.infer<typeof ApiPromptSchema>;

// ---------------------------------------------------------------------------------------------
// POST /prompt
// ---------------------------------------------------------------------------------------------

/**
 * The body ComfyUI's `POST /prompt` accepts. `prompt` stays `unknown` here: ComfyUI itself answers
 * a missing or malformed prompt with its own error bodies (see `validate-prompt.ts`).
 */
export const QueuePromptBodySchema = z.looseObject({
  prompt: z.unknown().optional(),
  client_id: z.string().optional(),
  prompt_id: z.string().optional(),
  number: z.number().optional(),
  front: z.boolean().optional(),
  extra_data: z.record(z.string(), z.unknown()).optional(),
  partial_execution_targets: z.array(z.string()).optional(),
});
export type QueuePromptBody = z.infer<typeof QueuePromptBodySchema>;

/**
 * A prompt as callers hold it (the store's `ComfyPrompt` shape): what {@link ApiPromptSchema}
 * parses to, and anything structurally like it.
 */
export type PromptInput = Record<
  string,
  { class_type: string; inputs: Record<string, unknown>; _meta?: unknown }
>;

/** The typed request our client sends. */
export interface QueuePromptRequest {
  prompt: PromptInput;
  client_id: string;
  prompt_id?: string;
  number?: number;
  front?: boolean;
  extra_data?: Record<string, unknown>;
  partial_execution_targets?: string[];
}

/** One validation error, both the top-level `error` and each item of a node's `errors`. */
export const PromptErrorItemSchema = z.looseObject({
  type: z.string(),
  message: z.string(),
  details: z.string(),
  extra_info: z.record(z.string(), z.unknown()),
});
export type PromptErrorItem = z.infer<typeof PromptErrorItemSchema>;

export const NodeErrorSchema = z.looseObject({
  errors: z.array(PromptErrorItemSchema),
  dependent_outputs: z.array(z.string()),
  class_type: z.string(),
});
export type NodeError = z.infer<typeof NodeErrorSchema>;

/** The 400 body of `POST /prompt`: `{error, node_errors}`. */
export const PromptErrorBodySchema = z.looseObject({
  error: PromptErrorItemSchema,
  node_errors: z.record(z.string(), NodeErrorSchema),
});
export type ComfyPromptErrorBody = z.infer<typeof PromptErrorBodySchema>;

/**
 * ComfyUI's 400 body when no output of the prompt validates. Its `details` lists `errors`, the
 * failing outputs' own errors, one `message: details` line each.
 */
export function outputsFailedValidation(
  errors: readonly Pick<PromptErrorItem, 'message' | 'details'>[],
  nodeErrors: Record<string, NodeError>,
): ComfyPromptErrorBody {
  return {
    error: {
      type: 'prompt_outputs_failed_validation',
      message: 'Prompt outputs failed validation',
      details: errors.map((e) => `${e.message}: ${e.details}`).join('\n'),
      extra_info: {},
    },
    node_errors: nodeErrors,
  };
}

/** The 200 body of `POST /prompt`. `node_errors` lists outputs dropped for failing validation. */
export const QueuePromptResponseSchema = z.looseObject({
  prompt_id: z.string(),
  number: z.number(),
  node_errors: z.record(z.string(), NodeErrorSchema),
});
export type QueuePromptResponse = z.infer<typeof QueuePromptResponseSchema>;

// ---------------------------------------------------------------------------------------------
// /queue, /prompt (GET), /history
// ---------------------------------------------------------------------------------------------

/**
 * A queue item: `[number, prompt_id, prompt, extra_data, outputs_to_execute, ...]` (newer
 * versions append a sixth element with sensitive extra data).
 */
export const QueueItemSchema = z.tuple(
  [z.number(), z.string(), ApiPromptSchema, z.record(z.string(), z.unknown()), z.array(z.string())],
  z.unknown(),
);
export type QueueItem = z.infer<typeof QueueItemSchema>;

export const QueueSchema = z.looseObject({
  queue_running: z.array(QueueItemSchema),
  queue_pending: z.array(QueueItemSchema),
});
export type QueueState = z.infer<typeof QueueSchema>;

/** `POST /queue` body. */
export interface QueueDeleteRequest {
  delete?: string[];
  clear?: boolean;
}

/** `GET /prompt` and the `status` message payload. */
export const QueueInfoSchema = z.looseObject({
  exec_info: z.looseObject({ queue_remaining: z.number() }),
});
export type QueueInfo = z.infer<typeof QueueInfoSchema>;

/** A file a node shows in its UI output, as used by `/view`. */
export const FileRefSchema = z.looseObject({
  filename: z.string(),
  subfolder: z.string(),
  type: z.string(),
});
export type FileRef = z.infer<typeof FileRefSchema>;

/** A node's UI output: `{images: [...], gifs: [...], text: [...], animated: [...], ...}`. */
export const NodeUiOutputSchema = z.record(z.string(), z.unknown());
export type NodeUiOutput = z.infer<typeof NodeUiOutputSchema>;

export const HistoryStatusSchema = z.looseObject({
  status_str: z.string(),
  completed: z.boolean(),
  messages: z.array(z.tuple([z.string(), z.record(z.string(), z.unknown())])),
});
export type HistoryStatus = z.infer<typeof HistoryStatusSchema>;

export const HistoryMetaSchema = z.looseObject({
  node_id: z.string(),
  display_node: z.string(),
  parent_node: z.string().nullable(),
  real_node_id: z.string(),
});

export const HistoryEntrySchema = z.looseObject({
  prompt: QueueItemSchema,
  outputs: z.record(z.string(), NodeUiOutputSchema),
  status: HistoryStatusSchema.nullable().optional(),
  meta: z.record(z.string(), HistoryMetaSchema).optional(),
});
export type HistoryEntry = z.infer<typeof HistoryEntrySchema>;

/** `GET /history` and `GET /history/{id}` (an unknown id answers `{}`). */
export const HistorySchema = z.record(z.string(), HistoryEntrySchema);
export type History = z.infer<typeof HistorySchema>;

// ---------------------------------------------------------------------------------------------
// /system_stats, /models, /embeddings, /extensions, /upload/image
// ---------------------------------------------------------------------------------------------

export const SystemStatsSchema = z.looseObject({
  system: z.looseObject({
    os: z.string(),
    ram_total: z.number(),
    ram_free: z.number(),
    comfyui_version: z.string(),
    required_frontend_version: z.string().optional(),
    installed_templates_version: z.string().nullable().optional(),
    required_templates_version: z.string().nullable().optional(),
    python_version: z.string(),
    pytorch_version: z.string(),
    embedded_python: z.boolean(),
    argv: z.array(z.string()),
  }),
  devices: z.array(
    z.looseObject({
      name: z.string(),
      type: z.string(),
      index: z.number().nullable(),
      vram_total: z.number(),
      vram_free: z.number(),
      torch_vram_total: z.number(),
      torch_vram_free: z.number(),
    }),
  ),
});
export type SystemStats = z.infer<typeof SystemStatsSchema>;

export const StringListSchema = z.array(z.string());

/** `POST /upload/image` answer. */
export const UploadResponseSchema = z.looseObject({
  name: z.string(),
  subfolder: z.string(),
  type: z.string(),
});
export type UploadResponse = z.infer<typeof UploadResponseSchema>;
