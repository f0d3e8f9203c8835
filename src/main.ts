import type { FastifyInstance } from 'fastify';
import type { Config } from './config/schema.js';
import { buildApp } from './app.js';
import { ensureAdmin } from './bootstrap.js';
import { createLogger } from './logger.js';
import { createServices, type Services } from './services.js';
import { openStore } from './store/index.js';
import { startBackupSchedule } from './backup/schedule.js';
import { publicBaseUrl, publicUrlNotice } from './config/public-url.js';

export interface RunningServer {
  app: FastifyInstance;
  services: Services;
  url: string;
  close(): Promise<void>;
}

/** Opens the store, builds the app and listens. The one place that wires the whole process. */
export async function startServer(
  config: Config,
  opts: { print?: (s: string) => void } = {},
): Promise<RunningServer> {
  const logger = createLogger(config.LOG_LEVEL);
  const store = await openStore(config);
  const services = await createServices(config, store, logger);
  const publicUrl = publicBaseUrl(config);
  await ensureAdmin(services.accounts, {
    dataDir: config.DATA_DIR,
    adminPassword: config.ADMIN_PASSWORD,
    publicUrl,
    logger,
    ...(opts.print ? { print: opts.print } : {}),
  });
  const app = await buildApp(services);
  services.queue.start();
  const backups = startBackupSchedule(services);
  await app.listen({ host: config.HOST, port: config.PORT });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : config.PORT;
  // Says once, on the terminal, where links point (and warns when only this machine can open it).
  (opts.print ?? ((s: string) => process.stdout.write(s)))(publicUrlNotice(config));
  logger.info({ publicUrl }, 'links use this base URL');
  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      services.queue.stop();
      await backups?.stop();
      await app.close(); // stops accepting and waits for in-flight requests
      await store.close();
      services.files.close?.();
    })());
  return { app, services, url: `http://127.0.0.1:${port}`, close };
}

/** Runs until SIGTERM/SIGINT, then shuts down gracefully. */
export async function serveForever(config: Config): Promise<void> {
  const server = await startServer(config);
  const stop = (signal: string) => {
    server.services.logger.info({ signal }, 'shutting down');
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
}
