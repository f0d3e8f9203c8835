/**
 * HTTP for the cloud providers (verda, runpod): JSON with a timeout, rate limits honoured
 * (`429` + `Retry-After`, waited out when short, else a `rate_limit` failure for the next look),
 * and failures turned into a {@link ProviderError} whose kind the autoscaler shows and alerts on.
 * Messages name the provider and the HTTP status and quote the provider's own message, never the
 * key or the request body.
 */
import { ProviderError } from './provider.js';

export type FailureKind = ProviderError['kind'];

export interface CloudResponse {
  status: number;
  headers: Headers;
  /** Parsed JSON, or the text when it is not JSON, or null when empty. */
  body: unknown;
}

export interface CloudHttpOptions {
  /** Provider name for messages. */
  provider: string;
  /** Per request. Default 30 s. */
  timeoutMs?: number;
  /** A `Retry-After` up to this long is waited out (once or twice); longer fails as `rate_limit`. Default 10 s. */
  maxRetryAfterMs?: number;
  /** Tests shorten waits. */
  sleep?: (ms: number) => Promise<void>;
}

/** Seconds or an HTTP date, as RFC 9110 allows; null when absent or unreadable. */
export function retryAfterMs(h: string | null, now = Date.now()): number | null {
  if (!h) return null;
  if (/^\d+$/.test(h.trim())) return Number(h.trim()) * 1000;
  const t = Date.parse(h);
  return Number.isNaN(t) ? null : Math.max(0, t - now);
}

export class CloudHttp {
  constructor(private readonly opts: CloudHttpOptions) {}

  /**
   * One request; 429 is retried after `Retry-After` (at most twice, when short). Network errors
   * and timeouts fail as `failed` (the provider is unreachable: try again next look).
   */
  async request(
    method: string,
    url: string,
    init: { headers?: Record<string, string>; json?: unknown; form?: Record<string, string> } = {},
  ): Promise<CloudResponse> {
    const sleep = this.opts.sleep ?? ((ms: number) => new Promise((r) => setTimeout(r, ms)));
    for (let attempt = 0; ; attempt++) {
      let res: Response;
      try {
        res = await fetch(url, {
          method,
          headers: {
            accept: 'application/json',
            ...(init.json !== undefined ? { 'content-type': 'application/json' } : {}),
            ...init.headers,
          },
          ...(init.json !== undefined ? { body: JSON.stringify(init.json) } : {}),
          signal: AbortSignal.timeout(this.opts.timeoutMs ?? 30_000),
        });
      } catch (err) {
        const why = (err as Error).name === 'TimeoutError' ? 'timed out' : (err as Error).message;
        throw new ProviderError(`${this.opts.provider} API unreachable (${method} ${pathOf(url)}: ${why})`);
      }
      const text = await res.text();
      let body: unknown = null;
      if (text) {
        try {
          body = JSON.parse(text);
        } catch {
          body = text;
        }
      }
      if (res.status === 429) {
        const wait = retryAfterMs(res.headers.get('retry-after'));
        if (attempt < 2 && wait !== null && wait <= (this.opts.maxRetryAfterMs ?? 10_000)) {
          await sleep(wait);
          continue;
        }
        throw new ProviderError(
          `${this.opts.provider} API rate limit (429${wait !== null ? `, retry after ${Math.ceil(wait / 1000)} s` : ''})`,
          'rate_limit',
        );
      }
      return { status: res.status, headers: res.headers, body };
    }
  }
}

function pathOf(url: string): string {
  try {
    return new URL(url).pathname;
  } catch {
    return url;
  }
}

/** The provider's own message from an error body (`{message}`, `{error}`, `{errors: [{message}]}`, text). */
export function messageOf(body: unknown): string {
  // A proxy's HTML error page says what it says in its text.
  if (typeof body === 'string')
    return body
      .replace(/<[^>]*>/g, ' ')
      .replace(/\s+/g, ' ')
      .trim()
      .slice(0, 300);
  if (body && typeof body === 'object') {
    const b = body as Record<string, unknown>;
    if (typeof b.message === 'string') return b.message.slice(0, 300);
    if (typeof b.error === 'string') return b.error.slice(0, 300);
    if (
      b.error &&
      typeof b.error === 'object' &&
      typeof (b.error as { message?: unknown }).message === 'string'
    )
      return (b.error as { message: string }).message.slice(0, 300);
    if (Array.isArray(b.errors) && typeof (b.errors[0] as { message?: unknown })?.message === 'string')
      return (b.errors[0] as { message: string }).message.slice(0, 300);
  }
  return '';
}
