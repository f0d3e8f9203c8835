import { EventEmitter } from 'node:events';
import type { BlobStore } from '../store/types.js';
import { getBroadcast, setBroadcast, type Broadcast } from '../gateway/status-routes.js';

export type { Broadcast };

/**
 * The instructor's broadcast message: one line every participant's ComfyUI shows in the workshop
 * banner (the workshop extension reads it through `GET /<user>/comfy-multi/status`). Stored where
 * the gateway reads it (blob `gateway/broadcast`), so every control-plane process sharing a store
 * sees the same message. `change` fires after every set made through this service.
 */
export class BroadcastService extends EventEmitter<{ change: [Broadcast | null] }> {
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
    this.emit('change', b);
    return b;
  }
}
