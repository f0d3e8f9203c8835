import type { AddressInfo } from 'node:net';
import { request } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { createRedirectServer, redirectTarget, type RedirectOptions } from './redirect-server.js';

const opts: RedirectOptions = { httpsPort: 8443, health: () => ({ status: 'ok', version: 't' }) };

describe('redirectTarget', () => {
  it('keeps the path and query exactly, encoded slashes included', () => {
    expect(redirectTarget('/u1/api/userdata/workflows%2Fa.json?overwrite=true', 'example.org:80', opts)).toBe(
      'https://example.org:8443/u1/api/userdata/workflows%2Fa.json?overwrite=true',
    );
  });
  it('leaves out :443 and prefers an https PUBLIC_URL over the Host header', () => {
    expect(redirectTarget('/x', 'example.org', { ...opts, httpsPort: 443 })).toBe('https://example.org/x');
    expect(redirectTarget('/x', 'evil.example', { ...opts, publicUrl: 'https://ws.example.org/' })).toBe(
      'https://ws.example.org/x',
    );
  });
  it('refuses a missing or malformed Host and reduces an absolute-form target to its path', () => {
    expect(redirectTarget('/x', undefined, opts)).toBeNull();
    expect(redirectTarget('/x', 'a b', opts)).toBeNull();
    expect(redirectTarget('http://evil.example/p?q=1', 'example.org', opts)).toBe(
      'https://example.org:8443/p?q=1',
    );
  });
});

describe('the redirect listener', () => {
  let server: ReturnType<typeof createRedirectServer> | undefined;
  afterEach(async () => {
    await new Promise((r) => server?.close(r) ?? r(undefined));
    server = undefined;
  });

  const send = (method: string, path: string, host?: string) =>
    new Promise<{ status: number; location?: string; body: string }>((resolve, reject) => {
      const { port } = server!.address() as AddressInfo;
      const req = request(
        { host: '127.0.0.1', port, method, path, headers: host === undefined ? {} : { host } },
        (res) => {
          let body = '';
          res.on('data', (c: Buffer) => (body += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode!, location: res.headers.location, body }));
        },
      );
      req.on('error', reject);
      req.end();
    });

  it('answers 301 for GET, 308 for POST, /health itself, and JSON 400 without a usable Host', async () => {
    server = createRedirectServer(opts);
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
    expect(await send('GET', '/login?next=%2Fu1%2F', 'h.example')).toMatchObject({
      status: 301,
      location: 'https://h.example:8443/login?next=%2Fu1%2F',
    });
    expect(await send('POST', '/login', 'h.example')).toMatchObject({
      status: 308,
      location: 'https://h.example:8443/login',
    });
    const health = await send('GET', '/health', 'h.example');
    expect(health.status).toBe(200);
    expect(JSON.parse(health.body)).toEqual({ status: 'ok', version: 't' });
    const bad = await send('GET', '/x', 'bad host');
    expect(bad.status).toBe(400);
    expect(JSON.parse(bad.body).error.code).toBe('BAD_REQUEST');
  });
});
