import type { Config } from './schema.js';

/**
 * The base URL links and login cards use: PUBLIC_URL, else this machine as `localhost` on PORT, over
 * https when the server itself speaks TLS (TLS_CERT).
 */
export function publicBaseUrl(
  config: Pick<Config, 'PUBLIC_URL' | 'PORT'> & { TLS_CERT?: string | undefined },
): string {
  return config.PUBLIC_URL ?? `${config.TLS_CERT ? 'https' : 'http'}://localhost:${config.PORT}`;
}

/** True for addresses only this machine can open: localhost, 127.0.0.0/8, ::1, 0.0.0.0. */
export function isLocalOnly(url: string): boolean {
  let host: string;
  try {
    host = new URL(url).hostname.toLowerCase();
  } catch {
    return false;
  }
  return (
    host === 'localhost' ||
    host.endsWith('.localhost') ||
    /^127\.\d+\.\d+\.\d+$/.test(host) ||
    host === '[::1]' ||
    host === '0.0.0.0' ||
    host === '[::]'
  );
}

/**
 * The lines `serve` and `users init` print about the base URL: which one links use and, when
 * participants' computers cannot open it, what to set instead.
 */
export function publicUrlNotice(
  config: Pick<Config, 'PUBLIC_URL' | 'PORT'> & { TLS_CERT?: string | undefined },
): string {
  const base = publicBaseUrl(config);
  const source = config.PUBLIC_URL ? 'PUBLIC_URL' : 'default; PUBLIC_URL is not set';
  let text = `Links and login cards use ${base} (${source}).\n`;
  if (isLocalOnly(base)) {
    text +=
      `WARNING: ${base} opens only on this machine; participants' computers cannot use these links.\n` +
      '  Set PUBLIC_URL to the address participants type, e.g. PUBLIC_URL=https://workshop.example.org,\n' +
      '  then make new cards: comfy-multi users cards --out cards.html\n';
  }
  return text;
}
