import { EventEmitter } from 'node:events';
import type { IncomingMessage } from 'node:http';
import { USER_NAME_RE } from '../auth/user-names.js';

export type SocketKind = 'participant' | 'worker' | 'admin' | 'other';

/** The part of a `ws` socket the tracker needs. */
interface ClosableSocket {
  once(event: 'close', listener: () => void): unknown;
}

/** The part of a `ws` WebSocketServer the tracker needs. */
interface ConnectionSource {
  on(event: 'connection', listener: (socket: ClosableSocket, request: IncomingMessage) => void): unknown;
  off(event: 'connection', listener: (socket: ClosableSocket, request: IncomingMessage) => void): unknown;
}

const PARTICIPANT_WS = /^\/([^/]+)\/(?:api\/)?ws$/;

/** Which kind of client a WebSocket upgrade path belongs to, and for participants whose space. */
export function classifySocketPath(url: string): { kind: SocketKind; user: string | null } {
  const path = url.split('?')[0] ?? '';
  if (path === '/worker/v1/ws') return { kind: 'worker', user: null };
  if (path === '/admin/api/live') return { kind: 'admin', user: null };
  const m = PARTICIPANT_WS.exec(path);
  if (m && USER_NAME_RE.test(m[1]!)) return { kind: 'participant', user: m[1]! };
  return { kind: 'other', user: null };
}

/**
 * Counts open WebSockets by kind, and participants' ComfyUI tabs by user ("online now"). Fed by
 * the `connection` event of @fastify/websocket's server, which fires only after the route's
 * authentication hooks accepted the upgrade, so it needs nothing from the routes themselves.
 * Other code may also call {@link track} for sockets it accepts elsewhere.
 */
export class ConnectionTracker extends EventEmitter<{ change: [] }> {
  private readonly byKind: Record<SocketKind, number> = { participant: 0, worker: 0, admin: 0, other: 0 };
  private readonly byUser = new Map<string, number>();
  private readonly lastSeen = new Map<string, number>();

  constructor(private readonly clock: () => number = Date.now) {
    super();
    this.setMaxListeners(0);
  }

  /** Listens to a WebSocketServer's connections; returns a function that stops listening. */
  attach(server: ConnectionSource): () => void {
    const onConnection = (socket: ClosableSocket, request: IncomingMessage) => {
      const { kind, user } = classifySocketPath(request.url ?? '');
      this.track(kind, user, socket);
    };
    server.on('connection', onConnection);
    return () => server.off('connection', onConnection);
  }

  /** Counts one open socket until it closes. */
  track(kind: SocketKind, user: string | null, socket: ClosableSocket): void {
    this.byKind[kind] += 1;
    if (kind === 'participant' && user) {
      this.byUser.set(user, (this.byUser.get(user) ?? 0) + 1);
      this.lastSeen.set(user, this.clock());
    }
    this.emit('change');
    socket.once('close', () => {
      this.byKind[kind] = Math.max(0, this.byKind[kind] - 1);
      if (kind === 'participant' && user) {
        const n = (this.byUser.get(user) ?? 1) - 1;
        if (n <= 0) this.byUser.delete(user);
        else this.byUser.set(user, n);
        this.lastSeen.set(user, this.clock());
      }
      this.emit('change');
    });
  }

  /** Open WebSockets by kind. */
  clients(): Record<SocketKind, number> {
    return { ...this.byKind };
  }

  /** Open ComfyUI tabs of a user (0 when offline). */
  tabsOf(user: string): number {
    return this.byUser.get(user) ?? 0;
  }

  /** Users with at least one open ComfyUI tab. */
  onlineUsers(): string[] {
    return [...this.byUser.keys()].sort();
  }

  /** Last time a user's tab connected or disconnected (this process only), or null. */
  lastSeenOf(user: string): number | null {
    return this.lastSeen.get(user) ?? null;
  }
}
