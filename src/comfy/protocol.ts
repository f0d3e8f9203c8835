/**
 * ComfyUI's HTTP and WebSocket API as zod schemas and TypeScript types, checked against the
 * recorded ComfyUI v0.3.64 responses in `shared/fixtures/comfyui-v0.3.64/` (beside the checkout).
 *
 * Schemas for what ComfyUI *sends* are loose objects (unknown keys pass through), because newer
 * ComfyUI versions and custom nodes add fields; what we rely on is required. Binary WebSocket
 * frames have their own encode/decode helpers at the end of this file.
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

// ---------------------------------------------------------------------------------------------
// /object_info
// ---------------------------------------------------------------------------------------------

/**
 * An input's type: a type name (`"INT"`, `"IMAGE"`, `"*"`, `"COMBO"`, `"A,B"`) or, old style, the
 * combo's option list itself.
 */
export const InputTypeSchema = z.union([z.string(), z.array(z.unknown())]);
export type InputType = z.infer<typeof InputTypeSchema>;

/**
 * Known input options; anything else passes through. Custom nodes put odd values here, so the
 * numeric limits stay `unknown` (ComfyUI compares them with Python semantics, and so do we).
 */
export const InputOptionsSchema = z.looseObject({
  default: z.unknown().optional(),
  min: z.unknown().optional(),
  max: z.unknown().optional(),
  step: z.unknown().optional(),
  round: z.unknown().optional(),
  tooltip: z.unknown().optional(),
  multiline: z.unknown().optional(),
  /** New-style combo (`["COMBO", {options: [...]}]`). */
  options: z.array(z.unknown()).optional(),
  multiselect: z.unknown().optional(),
  image_upload: z.unknown().optional(),
  video_upload: z.unknown().optional(),
  audio_upload: z.unknown().optional(),
  file_upload: z.unknown().optional(),
  image_folder: z.unknown().optional(),
  forceInput: z.unknown().optional(),
  lazy: z.unknown().optional(),
  rawLink: z.unknown().optional(),
});
export type InputOptions = z.infer<typeof InputOptionsSchema>;

/** `[type]` or `[type, options]` (custom nodes sometimes append more; ignored). */
export const InputSpecSchema = z.tuple([InputTypeSchema, InputOptionsSchema.optional()], z.unknown());
export type InputSpec = z.infer<typeof InputSpecSchema>;

export const NodeDefSchema = z.looseObject({
  input: z.looseObject({
    required: z.record(z.string(), InputSpecSchema).optional(),
    optional: z.record(z.string(), InputSpecSchema).optional(),
    /** `"PROMPT"` (V1 nodes) or `["PROMPT"]` (V3 nodes). */
    hidden: z.record(z.string(), z.unknown()).optional(),
  }),
  input_order: z
    .looseObject({
      required: z.array(z.string()).optional(),
      optional: z.array(z.string()).optional(),
      hidden: z.array(z.string()).optional(),
    })
    .optional(),
  output: z.array(InputTypeSchema),
  output_is_list: z.array(z.boolean()).optional(),
  output_name: z.array(z.string()).optional(),
  output_tooltips: z.array(z.string().nullable()).optional(),
  name: z.string(),
  display_name: z.string().nullable().optional(),
  description: z.string().nullable().optional(),
  python_module: z.string().optional(),
  category: z.string().optional(),
  output_node: z.boolean(),
  deprecated: z.boolean().optional(),
  experimental: z.boolean().optional(),
  /** Present on V3 (`comfy_api`) nodes only. */
  api_node: z.boolean().optional(),
});
export type NodeDef = z.infer<typeof NodeDefSchema>;

export const ObjectInfoSchema = z.record(z.string(), NodeDefSchema);
export type ObjectInfo = z.infer<typeof ObjectInfoSchema>;

/**
 * Parses `/object_info` node by node, so one custom node with an odd definition does not make the
 * whole answer unusable. Returns the valid nodes and the names of the ones dropped.
 */
export function parseObjectInfo(raw: unknown): { objectInfo: ObjectInfo; invalid: string[] } {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new TypeError('object_info is not a JSON object');
  }
  const objectInfo: ObjectInfo = {};
  const invalid: string[] = [];
  for (const [name, def] of Object.entries(raw)) {
    const parsed = NodeDefSchema.safeParse(def);
    if (parsed.success) objectInfo[name] = parsed.data;
    else invalid.push(name);
  }
  return { objectInfo, invalid };
}

/** Where an input is declared, with its type and options (ComfyUI's `get_input_info`). */
export interface InputInfo {
  type: InputType;
  category: 'required' | 'optional' | 'hidden';
  options: InputOptions;
}

export function getInputInfo(def: NodeDef, name: string): InputInfo | null {
  for (const category of ['required', 'optional'] as const) {
    const spec = def.input[category]?.[name];
    if (spec) return { type: spec[0], category, options: spec[1] ?? {} };
  }
  const hidden = def.input.hidden?.[name];
  if (hidden !== undefined) {
    const type = Array.isArray(hidden) ? hidden[0] : hidden;
    return { type: typeof type === 'string' ? type : String(type), category: 'hidden', options: {} };
  }
  return null;
}

/** Combo options of an input, old style (the type is the list) or new (`COMBO` + `options`). */
export function comboOptions(spec: InputSpec | undefined): unknown[] | null {
  if (!spec) return null;
  if (Array.isArray(spec[0])) return spec[0];
  if (spec[0] === 'COMBO') return spec[1]?.options ?? [];
  return null;
}

// ---------------------------------------------------------------------------------------------
// WebSocket text messages
// ---------------------------------------------------------------------------------------------

const promptId = z.string();

export const StatusDataSchema = z.looseObject({
  status: QueueInfoSchema,
  /** Only in the first message after connecting: the client id the server assigned or kept. */
  sid: z.string().optional(),
});
export const ExecutionStartDataSchema = z.looseObject({ prompt_id: promptId, timestamp: z.number() });
export const ExecutionCachedDataSchema = z.looseObject({
  nodes: z.array(z.string()),
  prompt_id: promptId,
  timestamp: z.number(),
});
export const ExecutingDataSchema = z.looseObject({
  /** `null` when the prompt finished. */
  node: z.string().nullable(),
  display_node: z.string().optional(),
  /** Missing in the `executing` ComfyUI re-sends to a reconnecting client. */
  prompt_id: promptId.optional(),
});
export const ProgressDataSchema = z.looseObject({
  value: z.number(),
  max: z.number(),
  prompt_id: promptId.nullable().optional(),
  node: z.string().nullable().optional(),
});
export const ProgressNodeStateSchema = z.looseObject({
  value: z.number(),
  max: z.number(),
  state: z.string(),
  node_id: z.string(),
  prompt_id: promptId,
  display_node_id: z.string().nullable().optional(),
  parent_node_id: z.string().nullable().optional(),
  real_node_id: z.string().nullable().optional(),
});
export const ProgressStateDataSchema = z.looseObject({
  prompt_id: promptId,
  nodes: z.record(z.string(), ProgressNodeStateSchema),
});
export const ExecutedDataSchema = z.looseObject({
  node: z.string(),
  display_node: z.string().optional(),
  output: NodeUiOutputSchema,
  prompt_id: promptId,
});
export const ExecutionSuccessDataSchema = z.looseObject({ prompt_id: promptId, timestamp: z.number() });
export const ExecutionErrorDataSchema = z.looseObject({
  prompt_id: promptId,
  node_id: z.string(),
  node_type: z.string(),
  executed: z.array(z.string()),
  exception_message: z.string(),
  exception_type: z.string(),
  traceback: z.array(z.string()),
  current_inputs: z.unknown(),
  current_outputs: z.unknown(),
  timestamp: z.number().optional(),
});
export const ExecutionInterruptedDataSchema = z.looseObject({
  prompt_id: promptId,
  node_id: z.string(),
  node_type: z.string(),
  executed: z.array(z.string()),
  timestamp: z.number().optional(),
});
export const FeatureFlagsDataSchema = z.record(z.string(), z.unknown());

const msg = <T extends string, S extends z.ZodType>(type: T, data: S) =>
  z.object({ type: z.literal(type), data });

export const WsMessageSchema = z.discriminatedUnion('type', [
  msg('status', StatusDataSchema),
  msg('execution_start', ExecutionStartDataSchema),
  msg('execution_cached', ExecutionCachedDataSchema),
  msg('executing', ExecutingDataSchema),
  msg('progress', ProgressDataSchema),
  msg('progress_state', ProgressStateDataSchema),
  msg('executed', ExecutedDataSchema),
  msg('execution_success', ExecutionSuccessDataSchema),
  msg('execution_error', ExecutionErrorDataSchema),
  msg('execution_interrupted', ExecutionInterruptedDataSchema),
  msg('feature_flags', FeatureFlagsDataSchema),
]);
/** A WebSocket text message of a type we know, validated. */
export type ComfyWsMessage = z.infer<typeof WsMessageSchema>;
export type ComfyWsMessageType = ComfyWsMessage['type'];
export type WsMessageOf<T extends ComfyWsMessageType> = Extract<ComfyWsMessage, { type: T }>;
export type ExecutedMessage = WsMessageOf<'executed'>;
export type ExecutedData = ExecutedMessage['data'];
export type ExecutionErrorData = WsMessageOf<'execution_error'>['data'];
export type ExecutionInterruptedData = WsMessageOf<'execution_interrupted'>['data'];

export const WS_MESSAGE_TYPES: readonly ComfyWsMessageType[] = [
  'status',
  'execution_start',
  'execution_cached',
  'executing',
  'progress',
  'progress_state',
  'executed',
  'execution_success',
  'execution_error',
  'execution_interrupted',
  'feature_flags',
];

/** A text message of a type we don't know (custom nodes, `logs`, ...) or whose shape surprised us. */
export interface OtherWsMessage {
  type: string;
  data: unknown;
}

export type ParsedWsText =
  | { kind: 'message'; message: ComfyWsMessage }
  | { kind: 'other'; message: OtherWsMessage; error?: string }
  | { kind: 'invalid'; error: string };

/** Parses a WebSocket text frame. Never throws. */
export function parseWsText(text: string): ParsedWsText {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    return { kind: 'invalid', error: `not JSON: ${(err as Error).message}` };
  }
  if (raw === null || typeof raw !== 'object' || typeof (raw as { type?: unknown }).type !== 'string') {
    return { kind: 'invalid', error: 'not a {type, data} message' };
  }
  const { type, data } = raw as { type: string; data?: unknown };
  if (!(WS_MESSAGE_TYPES as readonly string[]).includes(type))
    return { kind: 'other', message: { type, data } };
  const parsed = WsMessageSchema.safeParse(raw);
  if (!parsed.success) return { kind: 'other', message: { type, data }, error: parsed.error.message };
  return { kind: 'message', message: parsed.data };
}

/** The prompt id a text message belongs to, if it names one. */
export function promptIdOf(message: ComfyWsMessage | OtherWsMessage): string | null {
  const data = message.data as { prompt_id?: unknown } | null | undefined;
  return data && typeof data === 'object' && typeof data.prompt_id === 'string' ? data.prompt_id : null;
}

// ---------------------------------------------------------------------------------------------
// WebSocket binary frames
// ---------------------------------------------------------------------------------------------

/** ComfyUI's `protocol.BinaryEventTypes`: the big-endian uint32 that starts every binary frame. */
export const BinaryEventType = {
  PREVIEW_IMAGE: 1,
  UNENCODED_PREVIEW_IMAGE: 2,
  TEXT: 3,
  PREVIEW_IMAGE_WITH_METADATA: 4,
} as const;
export type BinaryEventName = keyof typeof BinaryEventType;

/** Image format codes inside a PREVIEW_IMAGE payload. */
export const PreviewImageFormat = { JPEG: 1, PNG: 2 } as const;

export const PreviewMetadataSchema = z.looseObject({
  node_id: z.string().optional(),
  prompt_id: z.string().optional(),
  display_node_id: z.string().nullable().optional(),
  parent_node_id: z.string().nullable().optional(),
  real_node_id: z.string().nullable().optional(),
  /** A MIME type, `image/png` or `image/jpeg`. */
  image_type: z.string().optional(),
});
export type PreviewMetadata = z.infer<typeof PreviewMetadataSchema>;

export type BinaryFrame =
  | {
      event: 1;
      name: 'PREVIEW_IMAGE';
      /** 1 = JPEG, 2 = PNG. */
      format: number;
      mime: string;
      image: Buffer;
    }
  | { event: 3; name: 'TEXT'; nodeId: string; text: string }
  | { event: 4; name: 'PREVIEW_IMAGE_WITH_METADATA'; metadata: PreviewMetadata; mime: string; image: Buffer }
  /** Type 2 never crosses the wire in ComfyUI (it is re-encoded as type 1); kept for completeness. */
  | { event: 2; name: 'UNENCODED_PREVIEW_IMAGE'; payload: Buffer }
  | { event: number; name: 'UNKNOWN'; payload: Buffer };

export class BinaryFrameError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BinaryFrameError';
  }
}

function mimeOfFormat(format: number): string {
  return format === PreviewImageFormat.PNG
    ? 'image/png'
    : format === PreviewImageFormat.JPEG
      ? 'image/jpeg'
      : 'application/octet-stream';
}

/** Decodes one binary WebSocket frame. Throws {@link BinaryFrameError} on a truncated frame. */
export function decodeBinaryFrame(data: Buffer | ArrayBuffer | Uint8Array): BinaryFrame {
  const buf = Buffer.isBuffer(data)
    ? data
    : data instanceof ArrayBuffer
      ? Buffer.from(data)
      : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (buf.length < 4) throw new BinaryFrameError(`binary frame of ${buf.length} bytes has no event type`);
  const event = buf.readUInt32BE(0);
  const body = buf.subarray(4);
  switch (event) {
    case BinaryEventType.PREVIEW_IMAGE: {
      if (body.length < 4) throw new BinaryFrameError('PREVIEW_IMAGE frame has no image format');
      const format = body.readUInt32BE(0);
      return { event, name: 'PREVIEW_IMAGE', format, mime: mimeOfFormat(format), image: body.subarray(4) };
    }
    case BinaryEventType.TEXT: {
      if (body.length < 4) throw new BinaryFrameError('TEXT frame has no node id length');
      const len = body.readUInt32BE(0);
      if (body.length < 4 + len) throw new BinaryFrameError('TEXT frame is shorter than its node id length');
      return {
        event,
        name: 'TEXT',
        nodeId: body.subarray(4, 4 + len).toString('utf8'),
        text: body.subarray(4 + len).toString('utf8'),
      };
    }
    case BinaryEventType.PREVIEW_IMAGE_WITH_METADATA: {
      if (body.length < 4)
        throw new BinaryFrameError('PREVIEW_IMAGE_WITH_METADATA frame has no metadata length');
      const len = body.readUInt32BE(0);
      if (body.length < 4 + len) throw new BinaryFrameError('PREVIEW_IMAGE_WITH_METADATA frame is truncated');
      let metadata: PreviewMetadata;
      try {
        metadata = PreviewMetadataSchema.parse(JSON.parse(body.subarray(4, 4 + len).toString('utf8')));
      } catch (err) {
        throw new BinaryFrameError(
          `PREVIEW_IMAGE_WITH_METADATA metadata is invalid: ${(err as Error).message}`,
        );
      }
      return {
        event,
        name: 'PREVIEW_IMAGE_WITH_METADATA',
        metadata,
        mime: metadata.image_type ?? 'application/octet-stream',
        image: body.subarray(4 + len),
      };
    }
    case BinaryEventType.UNENCODED_PREVIEW_IMAGE:
      return { event, name: 'UNENCODED_PREVIEW_IMAGE', payload: body };
    default:
      return { event, name: 'UNKNOWN', payload: body };
  }
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0, 0);
  return b;
}

/** Encodes a binary frame exactly as ComfyUI's server does. */
export function encodeBinaryFrame(frame: BinaryFrame): Buffer {
  switch (frame.name) {
    case 'PREVIEW_IMAGE':
      return Buffer.concat([u32(BinaryEventType.PREVIEW_IMAGE), u32(frame.format), frame.image]);
    case 'TEXT': {
      const id = Buffer.from(frame.nodeId, 'utf8');
      return Buffer.concat([u32(BinaryEventType.TEXT), u32(id.length), id, Buffer.from(frame.text, 'utf8')]);
    }
    case 'PREVIEW_IMAGE_WITH_METADATA': {
      const meta = Buffer.from(JSON.stringify({ ...frame.metadata, image_type: frame.mime }), 'utf8');
      return Buffer.concat([
        u32(BinaryEventType.PREVIEW_IMAGE_WITH_METADATA),
        u32(meta.length),
        meta,
        frame.image,
      ]);
    }
    default:
      return Buffer.concat([u32(frame.event), frame.payload]);
  }
}
