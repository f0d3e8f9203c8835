/**
 * ComfyUI's WebSocket as zod schemas and TypeScript types: the text messages (validated, unknown
 * types passed on as they are) and the binary frames (previews, text), with their decoder and an
 * encoder that writes them exactly as ComfyUI's server does. Part of `protocol.ts` (which
 * re-exports it).
 */
import { z } from 'zod';
import { NodeUiOutputSchema, QueueInfoSchema } from './protocol-http.js';

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
