import type { FastifyInstance } from 'fastify';

declare module 'fastify' {
  interface FastifyRequest {
    /**
     * Whether cookies set on this request's reply get `Secure`: the request came over HTTPS (our
     * own TLS, or a trusted proxy's X-Forwarded-Proto), or PUBLIC_URL is https. Decided once, in
     * {@link installTransportSecurity}; cookie writers only read it.
     */
    secureCookies: boolean;
  }
}

export interface TransportSecurityOptions {
  /** PUBLIC_URL: an https URL means browsers reach us over HTTPS, whatever this hop is. */
  publicUrl?: string | undefined;
  /** HSTS_MAX_AGE in seconds; 0 sends no Strict-Transport-Security header. */
  hstsMaxAge: number;
}

/**
 * Sets `request.secureCookies` and, on HTTPS requests only (browsers ignore HSTS over plain HTTP,
 * and sending it there would be a lie), the Strict-Transport-Security header. Register on the root
 * instance before any route so every scope inherits it.
 */
export function installTransportSecurity(app: FastifyInstance, opts: TransportSecurityOptions): void {
  const publicHttps = opts.publicUrl?.toLowerCase().startsWith('https:') ?? false;
  const hsts = opts.hstsMaxAge > 0 ? `max-age=${opts.hstsMaxAge}` : null;
  app.decorateRequest('secureCookies', false);
  app.addHook('onRequest', (request, reply, done) => {
    const https = request.protocol === 'https';
    request.secureCookies = https || publicHttps;
    if (https && hsts) reply.header('strict-transport-security', hsts);
    done();
  });
}
