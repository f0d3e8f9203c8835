import { createHmac, randomBytes } from 'node:crypto';
import type { BlobStore } from '../store/types.js';
import { safeEqual } from './passwords.js';
import { sharedSecret, type SecretLeases } from '../cluster/shared-secret.js';

export const SESSION_COOKIE = 'cm_session';
/** Remembers that this browser signed in as an account before (see `DeviceClaims`). */
export const DEVICE_COOKIE = 'cm_device';
/** Device cookies last a month: longer than any workshop, short enough to expire between them. */
export const DEVICE_TTL_SECONDS = 30 * 86_400;

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
 * A browser that signed in as `u` before. Its later login attempts for `u` are throttled on their
 * own (not with everyone else at the same address) and skip the account ceiling, so someone
 * guessing that account, even from the same venue NAT, cannot slow its owner on a browser they
 * used before. Not a credential: it only picks a throttle bucket.
 */
export interface DeviceClaims {
  u: string;
  /** Random device id. */
  d: string;
  /** Expiry, epoch seconds. */
  e: number;
}

/**
 * Signed session tokens: `base64url(JSON claims).base64url(HMAC-SHA256)`. The key lives in the
 * store (blob `secrets/session`), so every control-plane process sharing a store accepts them and a
 * restart keeps participants signed in. They are revocable server-side: the authenticator also
 * checks the account (password version, creation time) and the revocation list
 * (`SessionRevocations`) on every request.
 */
/** Checked session tokens remembered (see {@link SessionSigner.verify}). */
const MAX_VERIFIED = 10_000;

export class SessionSigner {
  private constructor(private readonly key: Buffer) {}

  /** `cluster`: processes starting together on an empty store agree on one key (see sharedSecret). */
  static async open(store: BlobStore, cluster?: SecretLeases): Promise<SessionSigner> {
    return new SessionSigner(await sharedSecret(store, 'session', cluster));
  }

  sign(claims: SessionClaims): string {
    return this.seal('session', claims);
  }

  signDevice(claims: DeviceClaims): string {
    return this.seal('device', claims);
  }

  /** The device claims when the signature is right and they have not expired; otherwise null. */
  verifyDevice(token: string, nowSeconds = Math.floor(Date.now() / 1000)): DeviceClaims | null {
    const c = this.unseal('device', token) as Partial<DeviceClaims> | null;
    if (!c || typeof c.u !== 'string' || typeof c.d !== 'string' || typeof c.e !== 'number') return null;
    return c.e > nowSeconds ? (c as DeviceClaims) : null;
  }

  /**
   * Tokens whose signature and claims checked out, with their claims: the same string always checks
   * out the same way, so a browser's every request need not pay for the HMAC again (70 µs of each
   * request on a busy machine; a job's round trip has two). Expiry is still checked every time;
   * logouts and account changes are the authenticator's business, never cached.
   */
  private readonly verified = new Map<string, Readonly<SessionClaims>>();

  /** The claims when the signature is right and the session has not expired; otherwise null. */
  verify(token: string, nowSeconds = Math.floor(Date.now() / 1000)): SessionClaims | null {
    const known = this.verified.get(token);
    if (known) return known.e > nowSeconds ? known : null;
    const c = this.unseal('session', token) as Partial<SessionClaims> | null;
    if (
      !c ||
      typeof c.u !== 'string' ||
      typeof c.v !== 'number' ||
      typeof c.e !== 'number' ||
      typeof c.s !== 'string' ||
      !/^[A-Za-z0-9_-]{16,64}$/.test(c.s) ||
      typeof c.c !== 'number'
    ) {
      return null;
    }
    if (c.e <= nowSeconds) return null;
    // Forgotten all at once when full: a room has a few dozen sessions, so this never happens in use.
    if (this.verified.size >= MAX_VERIFIED) this.verified.clear();
    const claims = Object.freeze(c as SessionClaims);
    this.verified.set(token, claims);
    return claims;
  }

  /** A fresh random session id. */
  static newId(): string {
    return randomBytes(16).toString('base64url');
  }

  // The kind is part of what is signed, so a device token never passes as a session or back.
  private seal(kind: 'session' | 'device', claims: object): string {
    const body = Buffer.from(JSON.stringify(claims)).toString('base64url');
    return `${body}.${this.mac(kind, body)}`;
  }

  private unseal(kind: 'session' | 'device', token: string): Record<string, unknown> | null {
    const dot = token.indexOf('.');
    if (dot <= 0 || token.length > 4096) return null;
    const body = token.slice(0, dot);
    if (!safeEqual(token.slice(dot + 1), this.mac(kind, body))) return null;
    try {
      const c: unknown = JSON.parse(Buffer.from(body, 'base64url').toString('utf8'));
      return typeof c === 'object' && c !== null ? (c as Record<string, unknown>) : null;
    } catch {
      return null;
    }
  }

  private mac(kind: 'session' | 'device', body: string): string {
    const h = createHmac('sha256', this.key);
    if (kind === 'device') h.update('device\u0000');
    return h.update(body).digest('base64url');
  }
}
