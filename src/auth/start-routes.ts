import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { AppError } from '../errors.js';
import { SESSION_TTL_SECONDS, setSessionCookie } from '../http/auth-hooks.js';
import { parse } from '../http/parse.js';
import { wantsHtmlPage } from '../http/html-pages.js';
import type { JobStore } from '../store/types.js';
import { principalOf, type Authenticator, type Principal } from './authenticator.js';
import { loginPage } from './login-page.js';
import { SignInTokens } from './sign-in-tokens.js';

const tokenParams = z.strictObject({ token: z.string().min(1).max(200) });

/** Where a signed-in person starts: the dashboard for instructors, their own ComfyUI otherwise. */
export function homeOf(p: Pick<Principal, 'name' | 'role'>): string {
  return p.role === 'instructor' ? '/admin/' : `/${encodeURIComponent(p.name)}/`;
}

/**
 * The site's front door:
 * - `GET /` — signed in: to your ComfyUI or the dashboard; signed out: the sign-in form (which then
 *   sends you to the same place). API clients get a small JSON pointer instead.
 * - `GET /login/t/<token>` — a login card's link: signs the participant in (a session cookie, the
 *   same as a password login) and sends them to their ComfyUI. The token stays usable until it is
 *   regenerated or revoked, so a participant can use the card on a second computer.
 */
export function startRoutes(app: FastifyInstance, deps: { auth: Authenticator; store: JobStore }): void {
  const tokens = new SignInTokens(deps.store);

  app.get('/', async (request: FastifyRequest, reply: FastifyReply) => {
    // Wrong or throttled credentials: treat as signed out and show the form.
    const principal: Principal | null = await deps.auth.identify(request).catch(() => null);
    reply.header('cache-control', 'no-store');
    if (!wantsHtmlPage(request)) {
      return { service: 'comfy-multi', signedInAs: principal?.name ?? null, login: '/login' };
    }
    if (principal) return reply.redirect(homeOf(principal), 303);
    return reply.type('text/html; charset=utf-8').send(loginPage({ next: '' }));
  });

  app.get('/login/t/:token', async (request, reply) => {
    const { token } = parse(tokenParams, request.params);
    // The token must not leak to the next page's requests or to a shared cache.
    reply.header('referrer-policy', 'no-referrer').header('cache-control', 'no-store');
    const account = await tokens.resolve(token);
    if (!account || account.role !== 'participant') {
      request.log.info({ ip: request.ip }, 'sign-in link refused');
      throw new AppError('SIGN_IN_LINK_INVALID');
    }
    const principal = principalOf(account, 'session');
    setSessionCookie(request, reply, deps.auth.mintSession(principal, SESSION_TTL_SECONDS));
    request.log.info({ user: account.name }, 'signed in with a sign-in link');
    return reply.redirect(homeOf(principal), 303);
  });
}
