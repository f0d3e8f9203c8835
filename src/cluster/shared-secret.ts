import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { BlobStore } from '../store/types.js';
import type { ClusterBus } from './cluster-bus.js';

export type SecretLeases = Pick<ClusterBus, 'shared' | 'holdLease' | 'releaseLease'>;

/**
 * A random key kept in the store (blob `secrets/<name>`), the same for every process sharing the
 * store: session and CSRF signing keys. The blob store has no create-if-absent, so when several
 * processes start at once on an empty store the first one to hold the `secret:<name>` lease
 * creates it and the others wait and read it; without that, two processes could each write their
 * own key and each sign cookies the other rejects.
 */
export async function sharedSecret(store: BlobStore, name: string, cluster?: SecretLeases): Promise<Buffer> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const hex = await store.getBlob('secrets', name);
    if (hex) return Buffer.from(hex, 'hex');
    const alone = !cluster?.shared || Date.now() > deadline;
    if (alone || (await cluster.holdLease(`secret:${name}`, 10_000))) {
      try {
        // Re-read under the lease: another process may have created it meanwhile.
        const again = await store.getBlob('secrets', name);
        if (again) return Buffer.from(again, 'hex');
        const fresh = randomBytes(32).toString('hex');
        await store.putBlob('secrets', name, fresh);
        return Buffer.from((await store.getBlob('secrets', name)) ?? fresh, 'hex');
      } finally {
        if (!alone) await cluster.releaseLease(`secret:${name}`).catch(() => undefined);
      }
    }
    await sleep(50);
  }
}
