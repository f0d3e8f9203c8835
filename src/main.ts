import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { Config } from './config/schema.js';
import { buildApp } from './app.js';
import { ensureAdmin } from './bootstrap.js';
import { createLogger } from './logger.js';
import { createServices, type Services } from './services.js';
import { openStore } from './store/index.js';
import { startBackupSchedule } from './backup/schedule.js';
import { checkDataDir } from './data-dir-check.js';
import { lockDataDir, type DataDirLock } from './data-dir-lock.js';
import { multiProcessNotes } from './config/cluster-check.js';
import { healthBody, markDraining } from './api/health-routes.js';
import { listen, loadServerTls, probePorts, type Listening } from './http/listen.js';
import { VERSION } from './version.js';
import { publicBaseUrl, publicUrlNotice } from './config/public-url.js';

/** How long after SHUTDOWN_GRACE_MS the process exits even if closing has not finished. */
const BACKSTOP_MS = 5_000;

export interface RunningServer {
  app: FastifyInstance;
  services: Services;
  url: string;
  /** Reloads TLS_CERT/TLS_KEY for new connections (SIGHUP); false without TLS or on failure. */
  reloadTls(): boolean;
  close(): Promise<void>;
}

/** Opens the store, builds the app and listens. The one place that wires the whole process. */
export async function startServer(
  config: Config,
  opts: { print?: (s: string) => void } = {},
): Promise<RunningServer> {
  const logger = createLogger(config.LOG_LEVEL);
  // Checks that fail in one sentence before anything is opened (StartupError).
  checkDataDir(config.DATA_DIR);
  // SQLite is one process's database: a second server on the same DATA_DIR refuses to start.
  const lock: DataDirLock | null = config.STORE === 'sqlite' ? lockDataDir(config.DATA_DIR) : null;
  try {
    return await startLocked(config, logger, lock, opts);
  } catch (err) {
    lock?.release();
    throw err;
  }
}

async function startLocked(
  config: Config,
  logger: Logger,
  lock: DataDirLock | null,
  opts: { print?: (s: string) => void },
): Promise<RunningServer> {
  const tls = loadServerTls(config, logger);
  await probePorts(config);
  const store = await openStore(config);
  const services = await createServices(config, store, logger);
  for (const note of multiProcessNotes(config)) logger.info(note);
  const publicUrl = publicBaseUrl(config);
  await ensureAdmin(services.accounts, {
    dataDir: config.DATA_DIR,
    adminPassword: config.ADMIN_PASSWORD,
    publicUrl,
    logger,
    ...(opts.print ? { print: opts.print } : {}),
  });
  const app = await buildApp(services, tls ? { https: { cert: tls.cert, key: tls.key } } : {});
  services.queue.start();
  const backups = startBackupSchedule(services);
  let closing: Promise<void> | undefined;
  let listening: Listening | undefined;
  // Rolling restart (docs/scaling.md): `/health` says draining at once; then app.close() closes
  // every WebSocket with 1012 (browsers and workers reconnect through the load balancer to another
  // process, workers keeping their jobs), stops listening (new connections are refused, which the
  // load balancer retries elsewhere) and waits for requests in flight, at most SHUTDOWN_GRACE_MS.
  const close = () =>
    (closing ??= (async () => {
      markDraining(app);
      services.queue.stop();
      await backups?.stop();
      await listening?.close();
      // Behind a load balancer, idle keep-alive connections are left for it to close (nginx after
      // its upstream keepalive_timeout): closing one ourselves races with a request it is sending
      // on it, which it cannot retry when that request is a POST. One process alone closes them
      // at once, as before.
      const held = services.cluster.shared
        ? holdIdleConnections(app, Math.min(IDLE_LINGER_MS, config.SHUTDOWN_GRACE_MS / 2))
        : undefined;
      await closeWithinGrace(app, config.SHUTDOWN_GRACE_MS, logger).finally(() => held?.());
      await store.close();
      services.files.close?.();
      lock?.release();
    })());
  try {
    listening = await listen(app, config, logger, tls, () => healthBody(VERSION));
  } catch (err) {
    await close().catch(() => undefined);
    throw err;
  }
  // Says once, on the terminal, where links point (and warns when only this machine can open it).
  (opts.print ?? ((s: string) => process.stdout.write(s)))(publicUrlNotice(config));
  logger.info({ publicUrl }, 'links use this base URL');
  return { app, services, url: listening.url, reloadTls: listening.reloadTls, close };
}

/** How long a draining process of a cluster leaves idle keep-alive connections to the load balancer. */
const IDLE_LINGER_MS = 5_000;

/**
 * Keeps node's `server.close()` from closing idle keep-alive connections for `ms`, then closes
 * those still idle. A request arriving on one meanwhile is served (its response says
 * `Connection: close`, see health-routes.ts). Returns a function that ends the hold early.
 */
export function holdIdleConnections(app: FastifyInstance, ms: number): () => void {
  const server = app.server;
  const original = server.closeIdleConnections.bind(server);
  server.closeIdleConnections = () => undefined;
  const release = () => {
    clearTimeout(timer);
    server.closeIdleConnections = original;
    original();
  };
  const timer = setTimeout(release, ms);
  return release;
}

/**
 * `app.close()` stops accepting and waits for requests in flight and WebSockets to end, which a
 * client that stops reading (a laptop lid closed mid-download) or never answers a close frame would
 * make last for ever. After `graceMs` the remaining connections are closed.
 */
export async function closeWithinGrace(app: FastifyInstance, graceMs: number, logger: Logger): Promise<void> {
  const force = setTimeout(() => {
    const sockets = app.websocketServer?.clients.size ?? 0;
    logger.warn({ graceMs, sockets }, 'shutdown grace over: closing the connections still open');
    // Upgraded sockets are no longer the HTTP server's to close, but its close() waits for them.
    for (const ws of app.websocketServer?.clients ?? []) ws.terminate();
    app.server.closeAllConnections();
  }, graceMs);
  try {
    await app.close();
  } finally {
    clearTimeout(force);
  }
}

/** Runs until SIGTERM/SIGINT, then shuts down gracefully. */
export async function serveForever(config: Config): Promise<void> {
  const server = await startServer(config);
  const stop = (signal: string) => {
    server.services.logger.info({ signal, graceMs: config.SHUTDOWN_GRACE_MS }, 'shutting down');
    // The last resort, should something else hang (a store that does not close): exit anyway.
    setTimeout(() => {
      server.services.logger.error('shutdown did not finish after the grace period; exiting');
      process.exit(1);
    }, config.SHUTDOWN_GRACE_MS + BACKSTOP_MS).unref();
    server.close().then(
      () => process.exit(0),
      (err: unknown) => {
        server.services.logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  // Renewed certificates (certbot's deploy hook, `systemctl reload`) without a restart. Only with
  // TLS: otherwise SIGHUP keeps its default meaning (the terminal closed, so stop).
  if (config.TLS_CERT) process.on('SIGHUP', () => server.reloadTls());
}
