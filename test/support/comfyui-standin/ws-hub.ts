/**
 * The `/ws` side of the stand-in: one socket per client id, JSON and binary frames, the
 * feature_flags handshake and ComfyUI's routing rule (sid given → that client only, no sid →
 * every connected client).
 */
import { randomUUID } from 'node:crypto';
import type { WebSocket } from 'ws';

/** What the server announces in its `feature_flags` reply and on `GET /features`. */
export const SERVER_FEATURES = { supports_preview_metadata: true, max_upload_size: 104857600 } as const;

export interface HubHooks {
  /** `{exec_info: {queue_remaining}}`, sent on connect. */
  queueInfo(): unknown;
  /** ComfyUI re-sends the running node to a reconnecting client that owns the running prompt. */
  runningNodeFor(sid: string): string | null;
}

export class WsHub {
  private readonly sockets = new Map<string, WebSocket>();
  private readonly flags = new Map<string, Record<string, unknown>>();
  private readonly all = new Set<WebSocket>();

  constructor(private readonly hooks: HubHooks) {}

  /** Registers a freshly upgraded socket. `clientId` comes from `/ws?clientId=`. */
  attach(ws: WebSocket, clientId: string | null): string {
    const sid = clientId || randomUUID().replace(/-/g, '');
    // Reusing a client id replaces the previous socket (which stays open but gets nothing more).
    this.sockets.delete(sid);
    this.sockets.set(sid, ws);
    this.flags.set(sid, {});
    this.all.add(ws);

    this.sendJson('status', { status: this.hooks.queueInfo(), sid }, sid);
    const running = this.hooks.runningNodeFor(sid);
    if (running !== null) this.sendJson('executing', { node: running }, sid);

    let firstMessage = true;
    ws.on('message', (raw, isBinary) => {
      if (isBinary) return;
      let msg: unknown;
      try {
        msg = JSON.parse(raw.toString());
      } catch {
        return; // ComfyUI logs and ignores invalid JSON (and it does not count as the first message)
      }
      if (!isObject(msg)) return; // ComfyUI's handler raises on non-objects before clearing the flag
      if (firstMessage && isFeatureFlags(msg)) {
        this.flags.set(sid, isObject(msg.data) ? msg.data : {});
        this.sendJson('feature_flags', SERVER_FEATURES, sid);
      }
      firstMessage = false;
    });
    ws.on('close', () => {
      this.all.delete(ws);
      // Faithful to ComfyUI: the cleanup pops by sid, even if a newer socket now owns that sid.
      // A client that reconnects with the same clientId before the old socket closed goes deaf.
      this.sockets.delete(sid);
      this.flags.delete(sid);
    });
    ws.on('error', () => undefined);
    return sid;
  }

  sendJson(type: string, data: unknown, sid?: string | null): void {
    this.deliver(JSON.stringify({ type, data }), sid);
  }

  /** A binary frame: 4-byte big-endian event type, then the payload. */
  sendBinary(eventType: number, payload: Buffer, sid?: string | null): void {
    const header = Buffer.alloc(4);
    header.writeUInt32BE(eventType, 0);
    this.deliver(Buffer.concat([header, payload]), sid);
  }

  supportsFeature(sid: string | null, name: string): boolean {
    if (sid === null) return false;
    return this.flags.get(sid)?.[name] === true;
  }

  clientIds(): string[] {
    return [...this.sockets.keys()];
  }

  connectionCount(): number {
    return this.all.size;
  }

  /** Drops every connection without a close frame, like a crashed or unplugged server. */
  terminateAll(): void {
    for (const ws of this.all) ws.terminate();
    this.all.clear();
    this.sockets.clear();
    this.flags.clear();
  }

  private deliver(frame: string | Buffer, sid?: string | null): void {
    if (sid === undefined || sid === null) {
      for (const ws of this.sockets.values()) safeSend(ws, frame);
      return;
    }
    const ws = this.sockets.get(sid);
    if (ws) safeSend(ws, frame);
  }
}

function safeSend(ws: WebSocket, frame: string | Buffer): void {
  if (ws.readyState !== ws.OPEN) return;
  ws.send(frame, () => undefined);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isFeatureFlags(msg: unknown): msg is { type: 'feature_flags'; data: unknown } {
  return isObject(msg) && msg.type === 'feature_flags';
}
