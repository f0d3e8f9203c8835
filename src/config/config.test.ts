import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { renderConfigDocs } from '../../scripts/config-docs.js';
import { ConfigError, loadConfig } from './load-config.js';

describe('config', () => {
  it('gives working defaults with an empty environment', () => {
    const c = loadConfig({});
    expect(c.PORT).toBe(8080);
    expect(c.STORE).toBe('sqlite');
    expect(c.QUEUE_MODE).toBe('round_robin');
    expect(c.MAX_PENDING_PER_USER).toBe(10);
    expect(c.MAX_RUNNING_PER_USER).toBe(1);
    expect(c.LEASE_MS).toBe(30_000);
    expect(c.BODY_LIMIT).toBe(10 * 1024 * 1024);
    // ComfyUI's own default (--max-upload-size 100): footage for video workflows fits.
    expect(c.UPLOAD_LIMIT).toBe(1024 ** 3);
  });

  it('parses numbers, sizes, booleans and token lists', () => {
    const c = loadConfig({
      PORT: '9000',
      BODY_LIMIT: '2mb',
      TRUST_PROXY: 'true',
      WORKER_TOKENS: 'gpu1:abc, gpu2:d:ef',
    });
    expect(c.PORT).toBe(9000);
    expect(c.BODY_LIMIT).toBe(2 * 1024 * 1024);
    expect(c.TRUST_PROXY).toBe(true);
    expect(c.WORKER_TOKENS).toEqual([
      { name: 'gpu1', secret: 'abc' },
      { name: 'gpu2', secret: 'd:ef' },
    ]);
  });

  it('names every bad field in one error', () => {
    let err: unknown;
    try {
      loadConfig({ PORT: 'eighty', QUEUE_MODE: 'lottery', BODY_LIMIT: 'huge' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const problems = (err as ConfigError).problems.join('\n');
    expect(problems).toMatch(/^PORT: /m);
    expect(problems).toMatch(/^QUEUE_MODE: /m);
    expect(problems).toMatch(/^BODY_LIMIT: /m);
  });

  it('requires REDIS_URL with STORE=redis', () => {
    expect(() => loadConfig({ STORE: 'redis' })).toThrow(/REDIS_URL: is required when STORE=redis/);
    expect(loadConfig({ STORE: 'redis', REDIS_URL: 'redis://127.0.0.1:6390' }).STORE).toBe('redis');
  });

  it('wants TLS_CERT and TLS_KEY together, and HTTP_REDIRECT_PORT only with TLS on another port', () => {
    const problems = (env: Record<string, string>) => {
      try {
        loadConfig(env);
        return [];
      } catch (e) {
        return (e as ConfigError).problems;
      }
    };
    expect(problems({ TLS_CERT: '/c.pem' })).toEqual(['TLS_KEY: set both TLS_CERT and TLS_KEY, or neither']);
    expect(problems({ TLS_KEY: '/k.pem' })).toEqual(['TLS_CERT: set both TLS_CERT and TLS_KEY, or neither']);
    expect(problems({ HTTP_REDIRECT_PORT: '80' })).toEqual([
      'HTTP_REDIRECT_PORT: needs TLS_CERT and TLS_KEY (it redirects plain HTTP to the HTTPS port)',
    ]);
    const tls = { TLS_CERT: '/c.pem', TLS_KEY: '/k.pem' };
    expect(problems({ ...tls, PORT: '443', HTTP_REDIRECT_PORT: '443' })).toEqual([
      'HTTP_REDIRECT_PORT: must differ from PORT',
    ]);
    const c = loadConfig({ ...tls, PORT: '443', HTTP_REDIRECT_PORT: '80' });
    expect([c.TLS_CERT, c.TLS_KEY, c.HTTP_REDIRECT_PORT, c.HSTS_MAX_AGE]).toEqual([
      '/c.pem',
      '/k.pem',
      80,
      31_536_000,
    ]);
  });

  it('never echoes a secret value in its error', () => {
    try {
      loadConfig({ ADMIN_PASSWORD: 'short', WORKER_TOKENS: 'no-colon-secretvalue' });
      expect.unreachable();
    } catch (e) {
      expect((e as Error).message).not.toContain('no-colon-secretvalue');
      expect((e as Error).message).not.toContain('short');
    }
  });

  it('treats empty strings as unset', () => {
    expect(loadConfig({ PORT: '', REDIS_URL: '' }).PORT).toBe(8080);
  });

  it('docs/configuration.md is generated from the schema and up to date (npm run docs:config)', () => {
    const onDisk = readFileSync(new URL('../../docs/configuration.md', import.meta.url), 'utf8');
    expect(onDisk).toBe(renderConfigDocs());
  });
});
