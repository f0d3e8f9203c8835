import { pino, type Logger } from 'pino';

/** Paths that may hold secrets; pino replaces them before a line is written. */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'headers.authorization',
  'headers.cookie',
  'password',
  'token',
  '*.password',
  '*.token',
];

/** Sign-in links carry their secret in the path (`/login/t/<token>`); logs keep only the user. */
export function redactUrl(url: string): string {
  return url.replace(/^(\/login\/t\/[a-z0-9_-]*)\.[^/?#]*/i, '$1.[redacted]');
}

interface LoggedRequest {
  method?: string;
  url?: string;
  host?: string;
  ip?: string;
  socket?: { remotePort?: number };
}

/**
 * The request as fastify logs it (method, url, host, remote address and port), with secrets in
 * the URL redacted. A logger's own serializers take precedence over fastify's defaults.
 */
function requestSerializer(req: LoggedRequest): Record<string, unknown> {
  return {
    method: req.method,
    url: typeof req.url === 'string' ? redactUrl(req.url) : req.url,
    host: req.host,
    remoteAddress: req.ip,
    remotePort: req.socket?.remotePort,
  };
}

export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino(
    { level, redact: { paths: REDACT_PATHS, censor: '[redacted]' }, serializers: { req: requestSerializer } },
    destination,
  );
}
