import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { AppError } from '../errors.js';
import { parse } from '../http/parse.js';
import { checkLoginOrigin, SESSION_TTL_SECONDS, setSessionCookie } from '../http/auth-hooks.js';
import type { Authenticator, Principal } from './authenticator.js';
import { loginPage } from './login-page.js';
import { safeNextPath } from './next-path.js';
import { DEVICE_COOKIE, DEVICE_TTL_SECONDS, SESSION_COOKIE } from './sessions.js';

const loginBody = z.object({
  user: z.string().min(1).max(64),
  password: z.string().min(1).max(1024),
  next: z.string().max(2048).optional(),
});

/** Only a path on this site (see `safeNextPath`); anything else goes to the principal's home. */
function safeNext(next: string | undefined, p: Principal): string {
  return safeNextPath(next) ?? (p.role === 'instructor' ? '/admin/' : `/${p.name}/`);
}

/** `/login` (form and JSON) and `/logout`. Browsers get a session cookie; scripts may use Basic instead. */
export function loginRoutes(app: FastifyInstance, auth: Authenticator): void {
  app.addContentTypeParser(
    'application/x-www-form-urlencoded',
    { parseAs: 'string', bodyLimit: 16_384 },
    (_req, body, done) => {
      done(null, Object.fromEntries(new URLSearchParams(body as string)));
    },
  );

  app.get('/login', async (request, reply) => {
    const next =
      typeof (request.query as { next?: unknown }).next === 'string'
        ? (request.query as { next: string }).next
        : '';
    return reply
      .type('text/html; charset=utf-8')
      .header('cache-control', 'no-store')
      .send(loginPage({ next: safeNextPath(next) ?? '' }));
  });

  app.post('/login', async (request, reply) => {
    const isForm = (request.headers['content-type'] ?? '').startsWith('application/x-www-form-urlencoded');
    const body = parse(loginBody, request.body);
    let principal: Principal;
    try {
      checkLoginOrigin(request);
      principal = await auth.login(
        { name: body.user, password: body.password },
        request.ip,
        request.cookies?.[DEVICE_COOKIE],
      );
    } catch (err) {
      if (!isForm || !(err instanceof AppError)) throw err;
      if (err.retryAfter) reply.header('retry-after', String(err.retryAfter));
      return reply
        .status(err.status)
        .type('text/html; charset=utf-8')
        .send(loginPage({ next: safeNextPath(body.next) ?? '', error: err.message }));
    }
    setSessionCookie(request, reply, auth.mintSession(principal, SESSION_TTL_SECONDS));
    // Only ever sent to /login: it picks this browser's own throttle bucket next time.
    reply.setCookie(
      DEVICE_COOKIE,
      auth.mintDevice(principal, request.cookies?.[DEVICE_COOKIE], DEVICE_TTL_SECONDS),
      {
        path: '/login',
        httpOnly: true,
        sameSite: 'lax',
        secure: request.protocol === 'https',
        maxAge: DEVICE_TTL_SECONDS,
      },
    );
    const target = safeNext(body.next, principal);
    if (isForm) return reply.redirect(target, 303);
    return { user: principal.name, role: principal.role, next: target };
  });

  const logout = async (request: import('fastify').FastifyRequest, reply: import('fastify').FastifyReply) => {
    // End the session on the server too: a copied cookie must not outlive the logout.
    await auth.endSession(request.cookies?.[SESSION_COOKIE]);
    reply.clearCookie(SESSION_COOKIE, { path: '/' });
    if ((request.headers.accept ?? '').includes('text/html')) return reply.redirect('/login', 303);
    return { ok: true };
  };
  app.post('/logout', logout);
  app.get('/logout', logout);
}
