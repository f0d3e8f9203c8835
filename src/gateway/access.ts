import type { FastifyReply, FastifyRequest } from 'fastify';
import { AppError } from '../errors.js';
import { requireUser } from '../http/auth-hooks.js';
import { RESERVED_NAMES, USER_NAME_RE } from '../auth/user-names.js';
import type { GatewayDeps } from './deps.js';

/**
 * Who may use `/<user>/…`: that user, or an instructor. Everyone else gets 403 whether or not the
 * user exists (so participants cannot probe names); an instructor asking for a user who does not
 * exist gets 404. Runs as an onRequest hook, so it also guards the WebSocket upgrade.
 */
export function gatewayAccess(deps: Pick<GatewayDeps, 'auth' | 'accounts'>) {
  const signedIn = requireUser(deps.auth);
  return async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const user = (request.params as { user?: unknown } | undefined)?.user;
    // Not a possible user name at all (`/favicon.ico`, ...): no space here, and nothing to hide.
    // Reserved names (`api`, `admin`, `worker`, ...) are the server's own top-level routes, never a
    // participant's space: an unknown `/api/v1/x` is a plain 404, not "no such user".
    if (typeof user !== 'string' || !USER_NAME_RE.test(user) || RESERVED_NAMES.has(user)) {
      throw new AppError('NOT_FOUND', `No route for ${request.method} ${request.url.split('?')[0]}.`);
    }
    await signedIn(request, reply);
    // A browser without a session was just sent to the login page.
    if (reply.sent) return;
    const principal = request.principal!;
    if (principal.name === user) return;
    if (principal.role !== 'instructor') {
      throw new AppError('FORBIDDEN', `You may only use your own space, /${principal.name}/.`);
    }
    if (!(await deps.accounts.get(user))) throw new AppError('USER_NOT_FOUND', `No user named ${user}.`);
  };
}

/** True when the caller is an instructor (instructors may also use `front: true`). */
export function isInstructor(request: FastifyRequest): boolean {
  return request.principal?.role === 'instructor';
}
