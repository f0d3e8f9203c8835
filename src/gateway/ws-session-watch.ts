/**
 * Closes participants' WebSockets whose session has ended (logout, password reset, account
 * removal), so a socket opened before a logout does not keep streaming that participant's events.
 * A socket authenticated by its session cookie is re-checked against the store every `intervalMs`
 * (two store reads per socket: trivial for a room, ~70 reads/s for 1,000 open sockets). The check
 * reads the store, so it also sees a logout or reset made by another process (the CLI, a second
 * control plane).
 */
import type { WebSocket } from 'ws';

/** Close code for "signed out": a policy violation, so the frontend's reconnect meets the login. */
export const SIGNED_OUT_CLOSE = 1008;

export class WsSessionWatch {
  private readonly sockets = new Map<WebSocket, () => Promise<boolean>>();
  private readonly timer: NodeJS.Timeout;
  private checking = false;

  constructor(intervalMs = 15_000) {
    this.timer = setInterval(() => void this.checkAll(), intervalMs);
    this.timer.unref();
  }

  /** Watches `socket` until it closes; `stillValid` answers whether its session still holds. */
  add(socket: WebSocket, stillValid: () => Promise<boolean>): void {
    this.sockets.set(socket, stillValid);
    socket.once('close', () => this.sockets.delete(socket));
  }

  /** Checks every watched socket now (the timer calls this). */
  async checkAll(): Promise<void> {
    if (this.checking) return;
    this.checking = true;
    try {
      for (const [socket, stillValid] of [...this.sockets]) {
        // A store that cannot be reached says nothing about the session: keep the socket.
        const ok = await stillValid().catch(() => true);
        if (!ok) {
          this.sockets.delete(socket);
          socket.close(SIGNED_OUT_CLOSE, 'signed out');
        }
      }
    } finally {
      this.checking = false;
    }
  }

  close(): void {
    clearInterval(this.timer);
    this.sockets.clear();
  }
}
