/**
 * Putting the app on the network: HTTP, or HTTPS with TLS_CERT/TLS_KEY (certificate reloadable on
 * SIGHUP), plus the optional plain-HTTP redirect listener. Every way listening can fail becomes a
 * one-sentence {@link StartupError}.
 */
import type { Server } from 'node:http';
import { createServer as createNetServer, type Server as NetServer } from 'node:net';
import type { Server as TlsServer } from 'node:tls';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import { StartupError, errorCode } from '../startup-error.js';
import { createRedirectServer } from './redirect-server.js';
import { describeCertificate, expiryWarning, loadTlsMaterial, type TlsMaterial } from './tls.js';

/** How often a running server looks at its certificate's expiry again (renewals do fail). */
const EXPIRY_CHECK_MS = 12 * 3_600_000;

function publicHost(config: Config): string | undefined {
  if (!config.PUBLIC_URL) return undefined;
  try {
    return new URL(config.PUBLIC_URL).hostname;
  } catch {
    return undefined;
  }
}

/** Loads and checks the certificate when TLS is configured (throws StartupError), logging warnings. */
export function loadServerTls(config: Config, logger: Logger): TlsMaterial | undefined {
  if (!config.TLS_CERT || !config.TLS_KEY) return undefined;
  const material = loadTlsMaterial(config.TLS_CERT, config.TLS_KEY, { publicHost: publicHost(config) });
  for (const w of material.warnings) logger.warn(w);
  return material;
}

/** One sentence for a failed listen on `variable` (PORT or HTTP_REDIRECT_PORT). */
export function listenError(err: unknown, variable: string, host: string, port: number): StartupError {
  const code = errorCode(err);
  const where = `${host}:${port}`;
  switch (code) {
    case 'EADDRINUSE':
      return new StartupError(
        `${variable} ${port} on ${host} is already in use (another comfy-multi or web server?): stop that program or set ${variable} to a free port.`,
        1,
        { cause: err },
      );
    case 'EACCES':
    case 'EPERM':
      return new StartupError(
        `Listening on ${where} (${variable}) is not permitted for this user: ports below 1024 need root or CAP_NET_BIND_SERVICE (see "HTTPS" in docs/admin-guide.md), or use a port above 1023.`,
        1,
        { cause: err },
      );
    case 'EADDRNOTAVAIL':
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return new StartupError(
        `HOST ${host} is not an address of this machine: use 0.0.0.0, 127.0.0.1 or one of its addresses.`,
        1,
        {
          cause: err,
        },
      );
    default:
      return new StartupError(`Cannot listen on ${where} (${variable}): ${(err as Error).message}.`, 1, {
        cause: err,
      });
  }
}

/**
 * Binds and releases HOST:port once, so a port in use (or not permitted) stops the start before
 * the store is opened and accounts are created, and in a fraction of the time. The real listen
 * later reports the same errors should the port be taken in between.
 */
export async function probePorts(config: Config): Promise<void> {
  const ports: [string, number][] = [['PORT', config.PORT]];
  if (config.TLS_CERT && config.HTTP_REDIRECT_PORT !== undefined) {
    ports.push(['HTTP_REDIRECT_PORT', config.HTTP_REDIRECT_PORT]);
  }
  for (const [variable, port] of ports) {
    if (port === 0) continue;
    const probe = createNetServer();
    try {
      await listenPlain(probe, config.HOST, port);
    } catch (err) {
      throw listenError(err, variable, config.HOST, port);
    }
    await new Promise<void>((resolve) => probe.close(() => resolve()));
  }
}

function listenPlain(server: NetServer, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

export interface Listening {
  /** Loopback URL of the app: `http://127.0.0.1:<port>` or `https://…`. */
  url: string;
  port: number;
  /** The redirect listener's port, when HTTP_REDIRECT_PORT is set. */
  redirectPort?: number;
  /**
   * Reads TLS_CERT/TLS_KEY again and uses them for new connections; open connections and
   * WebSockets keep the old ones. A failure keeps the old certificate and logs why. False without
   * TLS or on failure.
   */
  reloadTls(): boolean;
  /** Closes the redirect listener (the app is closed by its owner). */
  close(): Promise<void>;
}

/**
 * Listens with an app built by `buildApp(services, { https: tls })`. `health` is the body the
 * redirect listener's `/health` answers.
 */
export async function listen(
  app: FastifyInstance,
  config: Config,
  logger: Logger,
  tls: TlsMaterial | undefined,
  health: () => unknown,
): Promise<Listening> {
  try {
    await app.listen({ host: config.HOST, port: config.PORT });
  } catch (err) {
    throw listenError(err, 'PORT', config.HOST, config.PORT);
  }
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : config.PORT;
  const scheme = tls ? 'https' : 'http';
  if (tls) logger.info({ port, ...describeCertificate(tls) }, 'serving HTTPS');

  let redirect: Server | undefined;
  let redirectPort: number | undefined;
  if (tls && config.HTTP_REDIRECT_PORT !== undefined) {
    redirect = createRedirectServer({ httpsPort: port, publicUrl: config.PUBLIC_URL, health });
    try {
      await listenPlain(redirect, config.HOST, config.HTTP_REDIRECT_PORT);
    } catch (err) {
      throw listenError(err, 'HTTP_REDIRECT_PORT', config.HOST, config.HTTP_REDIRECT_PORT);
    }
    const a = redirect.address();
    redirectPort = typeof a === 'object' && a ? a.port : config.HTTP_REDIRECT_PORT;
    logger.info({ port: redirectPort }, 'redirecting plain HTTP to HTTPS');
  }

  let current = tls;
  // A workshop server runs for days: keep warning while the certificate nears its end.
  const expiryCheck = current
    ? setInterval(() => {
        const warning = current && expiryWarning(current.notAfter);
        if (warning) logger.warn(warning);
      }, EXPIRY_CHECK_MS).unref()
    : undefined;

  const reloadTls = (): boolean => {
    if (!tls || !config.TLS_CERT || !config.TLS_KEY) return false;
    try {
      const next = loadServerTls(config, logger)!;
      (app.server as unknown as TlsServer).setSecureContext({ cert: next.cert, key: next.key });
      current = next;
      logger.info(describeCertificate(next), 'TLS certificate reloaded');
      return true;
    } catch (err) {
      const reason = err instanceof StartupError ? err.message : String(err);
      logger.error({ reason }, 'TLS certificate reload failed; still serving the old certificate');
      return false;
    }
  };

  const close = async () => {
    clearInterval(expiryCheck);
    if (!redirect) return;
    const r = redirect;
    redirect = undefined;
    await new Promise<void>((resolve) => {
      r.close(() => resolve());
      r.closeAllConnections();
    });
  };
  return {
    url: `${scheme}://127.0.0.1:${port}`,
    port,
    ...(redirectPort !== undefined ? { redirectPort } : {}),
    reloadTls,
    close,
  };
}
