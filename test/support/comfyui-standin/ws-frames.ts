/**
 * Payloads of ComfyUI's binary WebSocket frames (after the 4-byte big-endian event type that
 * WsHub.sendBinary prepends), as built by server.py's send_image / send_image_with_metadata /
 * send_progress_text.
 */
import { pyJsonDumps } from './python-compat.js';

function uint32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n, 0);
  return b;
}

/** PREVIEW_IMAGE (1): image type (1 = JPEG, 2 = PNG), then the image bytes. */
export function previewPayload(png: Buffer): Buffer {
  return Buffer.concat([uint32(2), png]);
}

/**
 * PREVIEW_IMAGE_WITH_METADATA (4): metadata length, metadata JSON (Python's json.dumps
 * formatting, `image_type` added last), then the image bytes.
 */
export function previewWithMetadataPayload(png: Buffer, metadata: Record<string, unknown>): Buffer {
  const json = Buffer.from(pyJsonDumps({ ...metadata, image_type: 'image/png' }), 'utf8');
  return Buffer.concat([uint32(json.length), json, png]);
}

/** TEXT (3): node id length, node id, text (UTF-8). */
export function textPayload(nodeId: string, text: string): Buffer {
  const id = Buffer.from(nodeId, 'utf8');
  return Buffer.concat([uint32(id.length), id, Buffer.from(text, 'utf8')]);
}
