import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ZodError } from 'zod';
import { AppError, type ErrorCode } from '../errors.js';
import { HTML_PAGE_CSP, errorPage, wantsHtmlPage } from './html-pages.js';
import { trackRouteMethods } from './method-not-allowed.js';

/** Fastify's own error codes that mean the client sent something wrong. */
const FASTIFY_CODES: Record<string, ErrorCode> = {
  FST_ERR_CTP_INVALID_JSON_BODY: 'INVALID_JSON',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'INVALID_JSON',
  FST_ERR_CTP_BODY_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'BAD_REQUEST',
  FST_REQ_FILE_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  FST_FILES_LIMIT: 'PAYLOAD_TOO_LARGE',
  FST_PARTS_LIMIT: 'PAYLOAD_TOO_LARGE',
  FST_INVALID_MULTIPART_CONTENT_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_VALIDATION: 'VALIDATION_FAILED',
};

/** Turns any thrown value into the AppError the client sees; unknown errors become INTERNAL. */
export function toAppError(err: unknown): AppError {
  if (err instanceof AppError) return err;
  if (err instanceof ZodError) return validationError(err);
  const fe = err as Partial<FastifyError> & { statusCode?: number };
  if (fe && typeof fe.code === 'string' && fe.code in FASTIFY_CODES) {
    return new AppError(
      FASTIFY_CODES[fe.code]!,
      fe.code === 'FST_ERR_CTP_INVALID_JSON_BODY' ? undefined : fe.message,
    );
  }
  if (fe instanceof SyntaxError || (fe?.statusCode === 400 && /JSON/i.test(fe.message ?? '')))
    return new AppError('INVALID_JSON');
  if (fe?.statusCode === 413) return new AppError('PAYLOAD_TOO_LARGE');
  if (fe?.statusCode === 429) return new AppError('RATE_LIMITED');
  if (fe?.statusCode && fe.statusCode >= 400 && fe.statusCode < 500) return new AppError('BAD_REQUEST');
  return new AppError('INTERNAL', undefined, { cause: err });
}

export function validationError(err: ZodError): AppError {
  const issues = err.issues.map((i) => ({ path: i.path.join('.'), message: i.message }));
  const first = issues[0];
  const message = first
    ? `${first.path || 'body'}: ${first.message}`
    : 'The request does not match the expected shape.';
  return new AppError('VALIDATION_FAILED', message, { details: { issues } });
}

export function sendError(reply: FastifyReply, err: AppError): FastifyReply {
  if (err.retryAfter !== undefined) reply.header('retry-after', String(err.retryAfter));
  return reply.status(err.status).type('application/json; charset=utf-8').send(err.toJSON());
}

/**
 * The error for this caller: a browser navigating to a page gets an HTML page (same status, the
 * table's message and code, a link home); API clients get the JSON body.
 */
export function sendErrorTo(request: FastifyRequest, reply: FastifyReply, err: AppError): FastifyReply {
  if (!wantsHtmlPage(request)) return sendError(reply, err);
  if (err.retryAfter !== undefined) reply.header('retry-after', String(err.retryAfter));
  return reply
    .status(err.status)
    .type('text/html; charset=utf-8')
    .header('cache-control', 'no-store')
    .header('content-security-policy', HTML_PAGE_CSP)
    .send(errorPage(err, request.principal?.name ?? null));
}

/**
 * One error handler for the whole app: bodies from the error table, never a stack trace. An
 * unknown path is 404 NOT_FOUND; a known path asked with another method is 405 with `Allow`.
 * Call before any route is registered (it watches them to know their methods).
 */
export function installErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((err: unknown, request: FastifyRequest, reply: FastifyReply) => {
    const appErr = toAppError(err);
    if (appErr.code === 'INTERNAL') request.log.error({ err }, 'unhandled error');
    else request.log.debug({ code: appErr.code }, appErr.message);
    return sendErrorTo(request, reply, appErr);
  });
  const routes = trackRouteMethods(app);
  app.setNotFoundHandler((request, reply) => {
    const allowed = routes.allowed(request.url);
    if (allowed.length > 0 && !allowed.includes(request.method)) {
      reply.header('allow', allowed.join(', '));
      return sendErrorTo(
        request,
        reply,
        new AppError(
          'METHOD_NOT_ALLOWED',
          `${request.method} is not allowed here; use ${allowed.join(', ')}.`,
        ),
      );
    }
    return sendErrorTo(
      request,
      reply,
      new AppError('NOT_FOUND', `No route for ${request.method} ${request.url.split('?')[0]}.`),
    );
  });
}
