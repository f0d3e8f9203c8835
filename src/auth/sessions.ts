import { createHmac, randomBytes } from 'node:crypto';
import type { BlobStore } from '../store/types.js';
import { safeEqual } from './passwords.js';

export const SESSION_COOKIE = 'cm_session';

export interface SessionClaims {
  /** Account name. */
  u: string;
  /** The account's passwordVersion when the session began; a reset ends old sessions. */
  v: number;
  /** Expiry, epoch seconds. */
  e: number;
  /** Random session id, so one session can be revoked (logout) without ending the others. */
  s: string;
  /** The account's createdAt: a removed account re-created under the same name starts afresh. */
  c: number;
}

/**
 * Signed session tokens: `base64url(JSON claims).base64url(HMAC-SHA256)`. The key lives in the
 * store (blob `secrets/session`), so every control-plane process sharing a store accepts them and a
 * restart keeps participants signed in. They are revocable server-side: the authenticator also
 * checks the account (password version, creation time) and the revocation list
 * (`SessionRevocations`) on every request.
 */
export class SessionSigner {
  private constructor(private readonly key: Buffer) {}

  static async open(store: BlobStore): Promise<SessionSigner> {
    let hex = await store.getBlob('secrets', 'session');
    if (!hex) {
      hex = randomBytes(32).toString('hex');
      await store.putBlob('secrets', 'session', hex);
      // Another process may have raced us; whoever wrote last wins, so read it back.
      hex = (await store.getBlob('secrets', 'session')) ?? hex;
    }
    return new SessionSigner(Buffer.from(hex, 'hex'));
  }

  sign(claims: SessionClaims): string {
    const body = Buffer.from(JSON.stringify(claims)).toString('base64url');
    return `${body}.${this.mac(body)}`;
  }

  /** The claims when the signature is right and the session has not expired; otherwise null. */
  verify(token: string, nowSeconds = Math.floor(Date.now() / 1000)): SessionClaims | null {
    const dot = token.indexOf('.');
    if (dot <= 0 || token.length > 4096) return null;
    const body = token.slice(0, dot);
    if (!safeEqual(token.slice(dot + 1), this.mac(body))) return null;
    try {
      const c = JSON.parse(Buffer.from(body, 'base64url').toString('utf8')) as Partial<SessionClaims>;
      if (
        typeof c.u !== 'string' ||
        typeof c.v !== 'number' ||
        typeof c.e !== 'number' ||
        typeof c.s !== 'string' ||
        !/^[A-Za-z0-9_-]{16,64}$/.test(c.s) ||
        typeof c.c !== 'number'
      ) {
        return null;
      }
      return c.e > nowSeconds ? (c as SessionClaims) : null;
    } catch {
      return null;
    }
  }

  /** A fresh random session id. */
  static newId(): string {
    return randomBytes(16).toString('base64url');
  }

  private mac(body: string): string {
    return createHmac('sha256', this.key).update(body).digest('base64url');
  }
}
