/**
 * The instructor's broadcast message, in a folder of its own because two sides use it: the gateway
 * shows it in every participant's workshop banner and lets instructors set it from ComfyUI, the
 * dashboard sets it and pushes changes live. Both depend on this module; neither on the other.
 */
import { EventEmitter } from 'node:events';
import type { BlobStore } from '../store/types.js';

const BROADCAST_NS = 'gateway';
const BROADCAST_KEY = 'broadcast';

export interface Broadcast {
  message: string;
  at: number;
  by: string;
}

export async function getBroadcast(store: BlobStore): Promise<Broadcast | null> {
  const raw = await store.getBlob(BROADCAST_NS, BROADCAST_KEY);
  if (!raw) return null;
  try {
    const b = JSON.parse(raw) as Broadcast;
    return typeof b.message === 'string' && b.message !== '' ? b : null;
  } catch {
    return null;
  }
}

/** Sets (or, with an empty message, clears) the message every participant's banner shows. */
export async function setBroadcast(
  store: BlobStore,
  message: string,
  by: string,
  now = Date.now(),
): Promise<Broadcast | null> {
  if (message.trim() === '') {
    await store.deleteBlob(BROADCAST_NS, BROADCAST_KEY);
    return null;
  }
  const b: Broadcast = { message: message.trim(), at: now, by };
  await store.putBlob(BROADCAST_NS, BROADCAST_KEY, JSON.stringify(b));
  return b;
}

/**
 * The instructor's broadcast message: one line every participant's ComfyUI shows in the workshop
 * banner (the workshop extension reads it through `GET /<user>/comfy-multi/status`). Stored where
 * the gateway reads it (blob `gateway/broadcast`), so every control-plane process sharing a store
 * sees the same message. `change` fires after every set made through this service, and (origin
 * `remote`) after a set on another process (src/cluster/live-sync.ts).
 */
export class BroadcastService extends EventEmitter<{
  change: [broadcast: Broadcast | null, origin: 'local' | 'remote'];
}> {
  constructor(
    private readonly store: BlobStore,
    private readonly clock: () => number = Date.now,
  ) {
    super();
    this.setMaxListeners(0);
  }

  /** The current message, or null when none is shown. */
  get(): Promise<Broadcast | null> {
    return getBroadcast(this.store);
  }

  /** Shows `message` to every participant; an empty message clears the banner. */
  async set(message: string, by: string): Promise<Broadcast | null> {
    const b = await setBroadcast(this.store, message, by, this.clock());
    this.emit('change', b, 'local');
    return b;
  }

  /** Another process set the message (already stored): tell this process's listeners. */
  receive(b: Broadcast | null): void {
    this.emit('change', b, 'remote');
  }
}
