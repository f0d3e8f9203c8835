import { describe, expect, it } from 'vitest';
import { nginxSize, renderNginxConfig } from './nginx-config.js';

const base = { upstream: '127.0.0.1:8080', bodyLimit: 100 * 1024 * 1024, workerUploadLimit: 2 * 1024 ** 3 };

describe('renderNginxConfig', () => {
  it('plain HTTP on port 80 without a certificate, and no redirect server', () => {
    const text = renderNginxConfig(base);
    expect(text).toContain('listen 80;');
    expect(text).not.toContain('ssl');
    expect(text).not.toContain('return 301');
    expect(text).toContain('client_max_body_size 101m;');
    expect(text).toContain('client_max_body_size 2049m;');
  });

  it('HTTPS on 443 with a redirect from 80 by default; the redirect names a non-default port', () => {
    const tls = { ...base, cert: '/etc/le/fullchain.pem', key: '/etc/le/privkey.pem' };
    const text = renderNginxConfig(tls);
    expect(text).toContain('listen 443 ssl;');
    expect(text).toContain('return 301 https://$host$request_uri;');
    expect(renderNginxConfig({ ...tls, listen: '8443' })).toContain(
      'return 301 https://$host:8443$request_uri;',
    );
    expect(renderNginxConfig({ ...tls, redirectListen: null })).not.toContain('return 301');
  });

  it('refuses input that would add nginx syntax', () => {
    expect(() => renderNginxConfig({ ...base, serverName: 'a; include /etc/passwd' })).toThrow();
    expect(() => renderNginxConfig({ ...base, upstream: '127.0.0.1:80; x' })).toThrow();
    expect(() => renderNginxConfig({ ...base, cert: '/a b.pem', key: '/k.pem' })).toThrow();
    expect(() => renderNginxConfig({ ...base, cert: '/c.pem' })).toThrow(/both --cert and --key/);
  });

  it('several upstreams: every one listed, no stickiness, retries only what is safe to repeat', () => {
    const text = renderNginxConfig({
      ...base,
      upstream: ['127.0.0.1:8081', '127.0.0.1:8082', '127.0.0.1:8083', '127.0.0.1:8081'],
    });
    for (const p of [8081, 8082, 8083]) expect(text).toContain(`server 127.0.0.1:${p} max_fails=0;`);
    expect(text.match(/server 127\.0\.0\.1:8081/g)).toHaveLength(1);
    expect(text).not.toMatch(/^\s*(ip_hash|hash|sticky)\b/m);
    expect(text).toContain('proxy_next_upstream error timeout http_502 http_503 http_504;');
    expect(text).not.toMatch(/^\s*proxy_next_upstream[^;]*non_idempotent/m);
    // One process: nothing to retry on.
    expect(renderNginxConfig(base)).not.toContain('proxy_next_upstream ');
    expect(() => renderNginxConfig({ ...base, upstream: ['127.0.0.1:1', 'a b:2'] })).toThrow();
    expect(() => renderNginxConfig({ ...base, upstream: [] })).toThrow();
  });

  it('sizes are whole MiB, one above the limit', () => {
    expect(nginxSize(50 * 1024 * 1024)).toBe('51m');
    expect(nginxSize(1)).toBe('2m');
  });
});
