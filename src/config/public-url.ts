import type { Config } from './schema.js';

/**
 * The base URL links are built from: PUBLIC_URL, else this machine as `localhost` on PORT, over
 * https when the server itself speaks TLS (TLS_CERT).
 */
export function publicBaseUrl(config: Pick<Config, 'PUBLIC_URL' | 'PORT' | 'TLS_CERT'>): string {
  return config.PUBLIC_URL ?? `${config.TLS_CERT ? 'https' : 'http'}://localhost:${config.PORT}`;
}
