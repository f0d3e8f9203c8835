import type { BlobStore } from '../store/types.js';
import type { SessionClaims } from './sessions.js';

/** Blob namespace of revoked sessions; keys are `<expiry seconds>.<session id>`, values `1`. */
export const REVOKED_SESSIONS_NS = 'sessions-revoked';

/**
 * Sessions ended before their expiry (logout). Signed cookies stay valid until they expire, so a
 * logout records the session here until then; every request with a session cookie checks it.
 * Only logouts write, so the list stays as small as the number of logouts in a session lifetime,
 * and expired entries are dropped on each logout (the expiry is part of the key, so pruning reads
 * no values). Ending *all* of a user's sessions needs no entry: a password reset bumps the
 * account's password version, and removing an account (even re-creating it) changes what sessions
 * were signed for (see `Authenticator`). Kept in the `BlobStore` every backend already has, so
 * every control-plane process sharing the store sees a logout at once.
 */
export class SessionRevocations {
  constructor(private readonly store: BlobStore) {}

  async revoke(claims: SessionClaims, nowSeconds = Math.floor(Date.now() / 1000)): Promise<void> {
    await this.store.putBlob(REVOKED_SESSIONS_NS, key(claims), '1');
    await this.prune(nowSeconds);
  }

  async isRevoked(claims: SessionClaims): Promise<boolean> {
    return (await this.store.getBlob(REVOKED_SESSIONS_NS, key(claims))) !== null;
  }

  /** Drops entries whose session has expired anyway. */
  async prune(nowSeconds = Math.floor(Date.now() / 1000)): Promise<number> {
    let dropped = 0;
    for (const k of await this.store.listBlobs(REVOKED_SESSIONS_NS)) {
      const expiry = Number(k.slice(0, k.indexOf('.')));
      if (!Number.isFinite(expiry) || expiry <= nowSeconds) {
        if (await this.store.deleteBlob(REVOKED_SESSIONS_NS, k)) dropped++;
      }
    }
    return dropped;
  }
}

function key(c: SessionClaims): string {
  return `${c.e}.${c.s}`;
}
