/**
 * The optional plain-HTTP listener next to HTTPS (HTTP_REDIRECT_PORT): every request is sent to
 * the same path and query over https. It serves nothing else except `/health`, so a container
 * health check or a load balancer can probe the process without trusting the certificate.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { AppError } from '../errors.js';

export interface RedirectOptions {
  /** The HTTPS port browsers should use (the address in PUBLIC_URL wins when it is https). */
  httpsPort: number;
  /** PUBLIC_URL; when it is https its origin is the redirect target, whatever Host said. */
  publicUrl?: string | undefined;
  /** The JSON `/health` answers (the same body the HTTPS `/health` gives). */
  health: () => unknown;
}

/** A host name or address as it may appear in a Host header (the port is handled separately). */
const HOST_NAME = /^(?:[a-z0-9](?:[a-z0-9-]{0,62})(?:\.[a-z0-9-]{1,63})*\.?|\[[0-9a-f:.]+\])$/i;

/** Where a request to this listener should go instead, or null when its Host header is unusable. */
export function redirectTarget(
  url: string,
  hostHeader: string | undefined,
  opts: RedirectOptions,
): string | null {
  let origin: string;
  const pub = opts.publicUrl ? new URL(opts.publicUrl) : null;
  if (pub?.protocol === 'https:') {
    origin = pub.origin;
  } else {
    const host = (hostHeader ?? '').trim().replace(/:\d+$/, '');
    if (!HOST_NAME.test(host)) return null;
    origin = `https://${host}${opts.httpsPort === 443 ? '' : `:${opts.httpsPort}`}`;
  }
  // The path and query exactly as sent (encoded slashes included). An absolute-form request
  // target ("GET http://x/y") is reduced to its path so it cannot choose another host.
  const path = url.startsWith('/')
    ? url
    : new URL(url, 'http://x').pathname + new URL(url, 'http://x').search;
  return origin + path;
}

export function createRedirectServer(opts: RedirectOptions): Server {
  return createServer((req: IncomingMessage, res: ServerResponse) => {
    const method = req.method ?? 'GET';
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/health' && (method === 'GET' || method === 'HEAD')) {
      const body = JSON.stringify(opts.health());
      res.writeHead(200, {
        'content-type': 'application/json; charset=utf-8',
        'content-length': Buffer.byteLength(body),
      });
      res.end(method === 'HEAD' ? undefined : body);
      return;
    }
    const target = redirectTarget(req.url ?? '/', req.headers.host, opts);
    if (!target) {
      const err = new AppError('BAD_REQUEST', 'Missing or invalid Host header.');
      const body = JSON.stringify(err.toJSON());
      res.writeHead(err.status, { 'content-type': 'application/json; charset=utf-8', connection: 'close' });
      res.end(body);
      return;
    }
    // 308 keeps the method and body of a POST; browsers follow 301 for GET everywhere.
    const status = method === 'GET' || method === 'HEAD' ? 301 : 308;
    res.writeHead(status, {
      location: target,
      'content-type': 'text/plain; charset=utf-8',
      connection: 'close',
    });
    res.end(method === 'HEAD' ? undefined : `Use ${target}\n`);
  });
}
