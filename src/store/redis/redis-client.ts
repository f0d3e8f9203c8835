/**
 * The one place that creates ioredis clients. Everything in the project that talks to Redis (the
 * store, pub/sub, rate limits, ...) gets its connection here, so timeouts, retries and naming are
 * the same everywhere and the password in a URL is never logged.
 */
import { Redis, type RedisOptions } from 'ioredis';
import { AppError } from '../../errors.js';

export interface RedisClientOptions {
  /** Shown in `CLIENT LIST` as `comfy-multi:<name>`, e.g. `store`, `events`. */
  name: string;
  /** Give up a connection attempt after this long. Default 5000 ms. */
  connectTimeoutMs?: number;
  /**
   * Reconnection attempts a command waits through before it fails with
   * `MaxRetriesPerRequestError`. Default 3 (at most about 2 s while Redis is down), so callers get a
   * clear error instead of hanging. `null` waits forever (only for background subscribers).
   */
  maxRetriesPerRequest?: number | null;
  /** Fail a command that got no reply after this long. Default: none. */
  commandTimeoutMs?: number;
  /** Batch commands issued in the same tick into one write. Default true. */
  autoPipelining?: boolean;
  /** Called with every connection error (already redacted); default: ignored. */
  onError?: (err: Error) => void;
  /** Anything else ioredis accepts. `keyPrefix` is refused: key names belong to their owners. */
  extra?: Omit<RedisOptions, 'keyPrefix'>;
}

/** `redis://user:secret@host:6379/0` → `redis://user:***@host:6379/0`. Safe on malformed input. */
export function redactRedisUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return url.replace(/:[^:@/\s]*@/g, ':***@');
  }
}

/**
 * Reconnect backoff: 100, 200, 400 ms, then every 500 ms, with a little jitter. Short on purpose:
 * with `maxRetriesPerRequest` 3 a command waits at most about 2 s for Redis to come back.
 */
export function retryDelay(times: number): number {
  const base = Math.min(500, 50 * 2 ** Math.min(times, 10));
  return base + Math.floor(Math.random() * 50);
}

function sanitizeName(name: string): string {
  return `comfy-multi:${name}`.replace(/[^A-Za-z0-9_.:-]/g, '-');
}

/** Creates a client that starts connecting at once. Close it with `quit()` (or `disconnect()`). */
export function createRedisClient(url: string, opts: RedisClientOptions): Redis {
  const safeUrl = redactRedisUrl(url);
  const client = new Redis(url, {
    ...opts.extra,
    lazyConnect: false,
    connectionName: sanitizeName(opts.name),
    connectTimeout: opts.connectTimeoutMs ?? 5000,
    maxRetriesPerRequest: opts.maxRetriesPerRequest === undefined ? 3 : opts.maxRetriesPerRequest,
    ...(opts.commandTimeoutMs ? { commandTimeout: opts.commandTimeoutMs } : {}),
    enableAutoPipelining: opts.autoPipelining ?? true,
    enableOfflineQueue: true,
    retryStrategy: retryDelay,
  });
  // Without a listener ioredis prints every connection error to the console.
  client.on('error', (err: Error) => {
    if (!opts.onError) return;
    const e = new Error(`redis ${opts.name} (${safeUrl}): ${err.message}`, { cause: err });
    opts.onError(e);
  });
  return client;
}

/** Resolves once the client is ready; else rejects with `STORE_UNAVAILABLE` after `timeoutMs`. */
export function waitUntilReady(client: Redis, url: string, timeoutMs: number): Promise<void> {
  if (client.status === 'ready') return Promise.resolve();
  return new Promise((resolve, reject) => {
    let lastError: Error | undefined;
    const cleanup = (): void => {
      clearTimeout(timer);
      client.off('ready', onReady);
      client.off('error', onError);
      client.off('end', onEnd);
    };
    const fail = (why: string): void => {
      cleanup();
      reject(
        new AppError('STORE_UNAVAILABLE', `Cannot reach Redis at ${redactRedisUrl(url)}: ${why}`, {
          retryAfter: 5,
          cause: lastError,
        }),
      );
    };
    const onReady = (): void => {
      cleanup();
      resolve();
    };
    const onError = (err: Error): void => {
      lastError = err;
    };
    const onEnd = (): void => fail(lastError?.message ?? 'the connection was closed');
    const timer = setTimeout(
      () => fail(`${lastError?.message ?? 'no answer'} (gave up after ${timeoutMs} ms)`),
      timeoutMs,
    );
    client.on('ready', onReady);
    client.on('error', onError);
    client.once('end', onEnd);
  });
}

const CONNECTION_ERROR =
  /ECONNREFUSED|ECONNRESET|ETIMEDOUT|EHOSTUNREACH|ENOTFOUND|EPIPE|Connection is closed|connect ETIMEDOUT|Reached the max retries per request|Stream isn't writeable|Command timed out|LOADING|MaxRetriesPerRequest/i;

/** True for errors that mean "Redis cannot be reached right now" rather than a bug. */
export function isConnectionError(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  return err.name === 'MaxRetriesPerRequestError' || CONNECTION_ERROR.test(err.message);
}
