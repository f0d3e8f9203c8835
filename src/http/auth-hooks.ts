import type { FastifyReply, FastifyRequest } from 'fastify';
import { AppError } from '../errors.js';
import type { Authenticator, Principal } from '../auth/authenticator.js';
import { SESSION_COOKIE } from '../auth/sessions.js';

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal | null;
  }
}

/** Sessions last a workshop day and then some. */
export const SESSION_TTL_SECONDS = 7 * 86_400;

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

export function setSessionCookie(
  request: FastifyRequest,
  reply: FastifyReply,
  token: string,
  maxAge = SESSION_TTL_SECONDS,
): void {
  reply.setCookie(SESSION_COOKIE, token, {
    path: '/',
    httpOnly: true,
    sameSite: 'lax',
    secure: request.protocol === 'https',
    maxAge,
  });
}

/** A browser navigating to a page (not fetch/XHR/WebSocket) is sent to the login form instead of a 401. */
function isPageNavigation(request: FastifyRequest): boolean {
  return (
    request.method === 'GET' &&
    !request.headers.upgrade &&
    (request.headers.accept ?? '').includes('text/html') &&
    (request.headers['sec-fetch-mode'] ?? 'navigate') === 'navigate'
  );
}

/**
 * Cookie-authenticated writes must come from our own origin. SameSite=Lax already stops most
 * cross-site requests; this also covers old browsers and same-site sub-domains. Basic and Bearer
 * callers are not browsers acting on ambient credentials, so they skip it.
 */
function checkOrigin(request: FastifyRequest): void {
  if (SAFE_METHODS.has(request.method) || request.principal?.via !== 'session') return;
  const origin = request.headers.origin;
  if (!origin) return;
  let host: string;
  try {
    host = new URL(origin).host;
  } catch {
    throw new AppError('CSRF_FAILED');
  }
  if (host !== request.host) throw new AppError('CSRF_FAILED', 'Cross-site request refused.');
}

/**
 * Login CSRF: a cross-site page must not sign a browser into *our* site with the attacker's
 * account (the victim would then work, and upload, inside the attacker's space). Browsers send
 * `Origin` on every cross-site POST (`null` from sandboxed frames or with `no-referrer`), and
 * `Sec-Fetch-Site` when they support Fetch Metadata, so a login POST is refused when any of them
 * names another site, when `Origin` is `null`, or, lacking `Origin`, when `Referer` is another
 * site. A request with none of these headers is not a browser acting on a victim's behalf (curl,
 * scripts, API clients) and is allowed: it can only sign in whoever sends it.
 */
export function checkLoginOrigin(request: FastifyRequest): void {
  const refuse = () =>
    new AppError('CSRF_FAILED', 'Cross-site sign-in refused: open the login page of this site.');
  if (request.headers['sec-fetch-site'] === 'cross-site') throw refuse();
  const origin = request.headers.origin;
  const referer = request.headers.referer;
  const source = origin ?? referer;
  if (source === undefined) return;
  let host: string;
  let ours: string;
  try {
    host = new URL(source).host;
    // Normalised the same way (a default port is dropped), whatever the Host header spelled.
    ours = new URL(`${request.protocol}://${request.host}`).host;
  } catch {
    throw refuse();
  }
  if (host !== ours) throw refuse();
}

/** A hook that requires any signed-in account; sets a session cookie after a good Basic login. */
export function requireUser(auth: Authenticator) {
  return async (request: FastifyRequest, reply: FastifyReply): Promise<unknown> => {
    request.principal ??= await auth.identify(request);
    const p = request.principal;
    if (!p) {
      if (isPageNavigation(request)) {
        return reply.redirect(`/login?next=${encodeURIComponent(request.url)}`, 303);
      }
      reply.header('www-authenticate', 'Basic realm="comfy-multi", charset="UTF-8"');
      throw new AppError('UNAUTHORIZED');
    }
    checkOrigin(request);
    if (p.via === 'basic' && !request.cookies?.[SESSION_COOKIE]) {
      setSessionCookie(request, reply, auth.mintSession(p, SESSION_TTL_SECONDS));
    }
    return undefined;
  };
}

/** A hook that requires an instructor (or an API token). */
export function requireInstructor(auth: Authenticator) {
  const user = requireUser(auth);
  return async (request: FastifyRequest, reply: FastifyReply): Promise<unknown> => {
    const early = await user(request, reply);
    if (reply.sent) return early;
    if (request.principal?.role !== 'instructor')
      throw new AppError('FORBIDDEN', 'Only instructors may use this.');
    return undefined;
  };
}
