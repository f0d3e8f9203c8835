import { createHmac } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import type { Principal } from '../auth/authenticator.js';
import { safeEqual } from '../auth/passwords.js';
import { AppError } from '../errors.js';
import type { BlobStore } from '../store/types.js';
import { sharedSecret, type SecretLeases } from '../cluster/shared-secret.js';

/** The header every state-changing dashboard request must carry. */
export const CSRF_HEADER = 'x-comfy-multi-csrf';

/**
 * CSRF tokens for the dashboard's actions: `HMAC-SHA256(key, account name + password version)`.
 * The page reads its token from `GET /admin/api/me` (a cross-site page cannot read it) and sends it
 * in the {@link CSRF_HEADER} header; a custom header also forces a CORS preflight that we never
 * grant. A password reset changes the token. The key lives in the store (blob `secrets/csrf`), so
 * every process sharing the store accepts the same tokens. Bearer API tokens (scripts, never a
 * browser's ambient credentials) need no CSRF token.
 */
export class CsrfTokens {
  private constructor(private readonly key: Buffer) {}

  static async open(store: BlobStore, cluster?: SecretLeases): Promise<CsrfTokens> {
    return new CsrfTokens(await sharedSecret(store, 'csrf', cluster));
  }

  tokenFor(p: Pick<Principal, 'name' | 'passwordVersion'>): string {
    return createHmac('sha256', this.key)
      .update(`csrf\u0000${p.name}\u0000${p.passwordVersion ?? 0}`)
      .digest('base64url');
  }

  /** Throws CSRF_FAILED unless the request is exempt (Bearer) or carries this principal's token. */
  check(request: FastifyRequest): void {
    const p = request.principal;
    if (!p) throw new AppError('UNAUTHORIZED');
    if (p.via === 'token') return;
    const sent = request.headers[CSRF_HEADER];
    if (
      typeof sent !== 'string' ||
      sent.length === 0 ||
      sent.length > 200 ||
      !safeEqual(sent, this.tokenFor(p))
    ) {
      throw new AppError(
        'CSRF_FAILED',
        `Missing or wrong ${CSRF_HEADER} header: reload the dashboard and try again.`,
      );
    }
  }
}

/** Refuses a WebSocket upgrade or request whose Origin is another site (shared with the gateway). */
export { checkSameOrigin } from '../http/same-origin.js';
