/**
 * Verda's (formerly DataCrunch) public REST API as the providers use it: OAuth2 client credentials
 * (`POST /oauth2/token`), the bearer token on every call, one new token and one retry on a 401, and
 * the error body `{code, message}` mapped to the failure kinds the autoscaler shows. Checked
 * against Verda's official Python SDK (verda/authentication, verda/constants `ErrorCodes`), whose
 * default base URL is https://api.verda.com/v1 (formerly api.datacrunch.io).
 */
import { CloudHttp, messageOf, type CloudResponse } from './cloud-http.js';
import { ProviderError } from './provider.js';

export interface VerdaApiOptions {
  apiUrl: string;
  clientId: string;
  clientSecret: string;
  timeoutMs?: number | undefined;
  sleep?: ((ms: number) => Promise<void>) | undefined;
}

export class VerdaApi {
  private readonly http: CloudHttp;
  private token: string | null = null;

  constructor(private readonly opts: VerdaApiOptions) {
    this.http = new CloudHttp({
      provider: 'verda',
      ...(opts.timeoutMs ? { timeoutMs: opts.timeoutMs } : {}),
      ...(opts.sleep ? { sleep: opts.sleep } : {}),
    });
  }

  get apiUrl(): string {
    return this.opts.apiUrl;
  }

  private async accessToken(fresh: boolean): Promise<string> {
    if (this.token && !fresh) return this.token;
    const res = await this.http.request('POST', `${this.opts.apiUrl}/oauth2/token`, {
      json: {
        grant_type: 'client_credentials',
        client_id: this.opts.clientId,
        client_secret: this.opts.clientSecret,
      },
    });
    const tok = (res.body as { access_token?: unknown } | null)?.access_token;
    if (res.status >= 400 || typeof tok !== 'string')
      throw new ProviderError(
        `Verda refused the client credentials (${res.status}${messageOf(res.body) ? `: ${messageOf(res.body)}` : ''}); check AUTOSCALE_VERDA_CLIENT_ID and AUTOSCALE_VERDA_CLIENT_SECRET`,
        'credentials',
      );
    this.token = tok;
    return tok;
  }

  /** One API call with the bearer token; a 401 gets a new token and one retry. */
  async call(method: string, path: string, json?: unknown): Promise<unknown> {
    let res: CloudResponse | null = null;
    for (const fresh of [false, true]) {
      const token = await this.accessToken(fresh);
      res = await this.http.request(method, `${this.opts.apiUrl}${path}`, {
        headers: { authorization: `Bearer ${token}` },
        ...(json !== undefined ? { json } : {}),
      });
      if (res.status !== 401) break;
    }
    if (res!.status < 400) return res!.body;
    throw verdaError(method, path, res!);
  }
}

/** A Verda error body `{code, message}` as the failure kinds the autoscaler knows. */
export function verdaError(method: string, path: string, res: CloudResponse): ProviderError {
  const code = String((res.body as { code?: unknown } | null)?.code ?? '');
  const msg = messageOf(res.body);
  const text = `Verda ${method} ${path}: ${res.status}${code ? ` ${code}` : ''}${msg ? `: ${msg}` : ''}`;
  if (res.status === 401 || code === 'unauthorized_request')
    return new ProviderError(`${text} (expired or revoked credentials)`, 'credentials');
  if (code === 'insufficient_funds' || /quota|limit reached|insufficient/i.test(msg))
    return new ProviderError(text, 'quota');
  if (/capacity|not available|unavailable in|sold out/i.test(msg) || code === 'service_unavailable')
    return new ProviderError(text, 'capacity');
  return new ProviderError(text);
}
