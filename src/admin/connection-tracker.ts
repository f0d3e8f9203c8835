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
export class ConnectionTracker extends EventEmitter<{ change: [origin: 'local' | 'remote'] }> {
  private readonly byKind: Record<SocketKind, number> = { participant: 0, worker: 0, admin: 0, other: 0 };
  private readonly byUser = new Map<string, number>();
  private readonly lastSeen = new Map<string, number>();
  /** Other control-plane processes' ComfyUI tabs by user (src/cluster/worker-directory.ts). */
  private readonly remote = new Map<string, ReadonlyMap<string, number>>();

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
    this.emit('change', 'local');
    socket.once('close', () => {
      this.byKind[kind] = Math.max(0, this.byKind[kind] - 1);
      if (kind === 'participant' && user) {
        const n = (this.byUser.get(user) ?? 1) - 1;
        if (n <= 0) this.byUser.delete(user);
        else this.byUser.set(user, n);
        this.lastSeen.set(user, this.clock());
      }
      this.emit('change', 'local');
    });
  }

  /**
   * Another process's open ComfyUI tabs by user (null: that process is gone). Counted by
   * {@link tabsOf} and {@link onlineUsers}, so a participant whose tab is connected to any process
   * shows online on every dashboard; {@link clients} stays this process's own sockets.
   */
  setRemote(processId: string, tabs: Readonly<Record<string, number>> | null): void {
    const before = this.remote.get(processId);
    const next = tabs ? new Map(Object.entries(tabs).filter(([, n]) => n > 0)) : null;
    if (sameTabs(before, next)) return;
    if (next) this.remote.set(processId, next);
    else this.remote.delete(processId);
    this.emit('change', 'remote');
  }

  /** This process's open ComfyUI tabs by user (what it reports to the others). */
  localTabs(): Record<string, number> {
    return Object.fromEntries(this.byUser);
  }

  /** Users with a ComfyUI tab open on this process (Prometheus reports each process's own). */
  localOnlineUsers(): string[] {
    return [...this.byUser.keys()].sort();
  }

  /** Open WebSockets by kind. */
  clients(): Record<SocketKind, number> {
    return { ...this.byKind };
  }

  /** Open ComfyUI tabs of a user on every process (0 when offline). */
  tabsOf(user: string): number {
    let n = this.byUser.get(user) ?? 0;
    for (const tabs of this.remote.values()) n += tabs.get(user) ?? 0;
    return n;
  }

  /** Users with at least one open ComfyUI tab on any process. */
  onlineUsers(): string[] {
    if (this.remote.size === 0) return [...this.byUser.keys()].sort();
    const users = new Set(this.byUser.keys());
    for (const tabs of this.remote.values()) for (const u of tabs.keys()) users.add(u);
    return [...users].sort();
  }

  /** Last time a user's tab connected or disconnected (this process only), or null. */
  lastSeenOf(user: string): number | null {
    return this.lastSeen.get(user) ?? null;
  }
}

function sameTabs(
  a: ReadonlyMap<string, number> | undefined,
  b: ReadonlyMap<string, number> | null,
): boolean {
  if (!a || !b) return !a && !b;
  if (a.size !== b.size) return false;
  for (const [k, v] of a) if (b.get(k) !== v) return false;
  return true;
}
