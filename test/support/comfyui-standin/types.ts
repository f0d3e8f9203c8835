/**
 * Wire types of the ComfyUI v0.3.64 HTTP/WS contract, as far as the stand-in produces them.
 * Names follow ComfyUI's JSON keys (snake_case) on purpose: these objects go on the wire as-is.
 */

export type NodeId = string;

/** An API-format prompt: node id → `{class_type, inputs}`. Links are `[nodeId, outputIndex]`. */
export interface PromptNode {
  class_type: string;
  inputs: Record<string, unknown>;
  _meta?: unknown;
}
export type ApiPrompt = Record<NodeId, PromptNode>;

export type ExtraData = Record<string, unknown> & { client_id?: string };

/** ComfyUI's queue tuple: `[number, prompt_id, prompt, extra_data, outputs_to_execute]`. */
export type QueueItem = [number, string, ApiPrompt, ExtraData, NodeId[]];

/** A node's UI output, e.g. `{images: [{filename, subfolder, type}]}` or `{text: ["40"]}`. */
export type UiOutput = Record<string, unknown[]>;

export interface NodeMeta {
  node_id: NodeId;
  display_node: NodeId;
  parent_node: null;
  real_node_id: NodeId;
}

/** `[event_name, data]` pairs kept in `history[id].status.messages`. */
export type StatusMessage = [string, Record<string, unknown>];

export interface HistoryEntry {
  prompt: QueueItem;
  outputs: Record<NodeId, UiOutput>;
  status: { status_str: 'success' | 'error'; completed: boolean; messages: StatusMessage[] };
  meta: Record<NodeId, NodeMeta>;
}

/** `{type, message, details, extra_info}` as used in `/prompt` 400 responses. */
export interface PromptError {
  type: string;
  message: string;
  details: string;
  extra_info: Record<string, unknown>;
}

export interface NodeErrorEntry {
  errors: PromptError[];
  dependent_outputs: NodeId[];
  class_type: string;
}

/** Binary WS event types (ComfyUI's protocol.BinaryEventTypes). */
export const BinaryEvent = {
  PREVIEW_IMAGE: 1,
  UNENCODED_PREVIEW_IMAGE: 2,
  TEXT: 3,
  PREVIEW_IMAGE_WITH_METADATA: 4,
} as const;

export interface DataDirs {
  root: string;
  input: string;
  output: string;
  temp: string;
  /** ComfyUI's `models/` folder: files under `models/loras/` are listed like ComfyUI lists them. */
  models: string;
}

export function isLink(value: unknown): value is [string, number] {
  return (
    Array.isArray(value) && value.length === 2 && typeof value[0] === 'string' && typeof value[1] === 'number'
  );
}
