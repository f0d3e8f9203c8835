/**
 * ComfyUI's HTTP and WebSocket API as zod schemas and TypeScript types, checked against the
 * recorded ComfyUI v0.3.64 responses in `shared/fixtures/comfyui-v0.3.64/` (beside the checkout).
 *
 * Schemas for what ComfyUI *sends* are loose objects (unknown keys pass through), because newer
 * ComfyUI versions and custom nodes add fields; what we rely on is required. Binary WebSocket
 * frames have their own encode/decode helpers.
 *
 * The schemas live in three modules along the API's seams, all re-exported here so importers use
 * this one: protocol-http.ts (prompts, queue, history, system stats, uploads),
 * protocol-object-info.ts (node definitions) and protocol-ws.ts (WebSocket messages and frames).
 */
export * from './protocol-http.js';
export * from './protocol-object-info.js';
export * from './protocol-ws.js';
