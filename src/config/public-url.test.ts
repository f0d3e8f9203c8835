import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from './load-config.js';
import { isLocalOnly, publicBaseUrl, publicUrlNotice } from './public-url.js';

describe('PUBLIC_URL', () => {
  it('is normalised to an origin without a trailing slash', () => {
    expect(loadConfig({ PUBLIC_URL: 'https://Workshop.Example.org/' }).PUBLIC_URL).toBe(
      'https://workshop.example.org',
    );
    expect(loadConfig({ PUBLIC_URL: ' http://10.0.0.5:8080 ' }).PUBLIC_URL).toBe('http://10.0.0.5:8080');
  });

  it.each([
    ['workshop.example.org', /URL/],
    ['ftp://workshop.example.org', /http/],
    ['https://workshop.example.org/comfy', /no path/],
    ['https://workshop.example.org/?a=1', /no path/],
    ['https://u:p@workshop.example.org', /user name/],
  ])('refuses %s with a clear sentence', (value, message) => {
    let err: unknown;
    try {
      loadConfig({ PUBLIC_URL: value });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(/PUBLIC_URL/);
    expect((err as Error).message).toMatch(message);
  });

  it('defaults to localhost, and the notice warns that participants cannot open it', () => {
    const config = loadConfig({ PORT: '9000' });
    expect(publicBaseUrl(config)).toBe('http://localhost:9000');
    expect(publicUrlNotice(config)).toMatch(/use http:\/\/localhost:9000 \(default; PUBLIC_URL is not set\)/);
    expect(publicUrlNotice(config)).toMatch(/WARNING: .*participants' computers cannot use these links/);
    const set = loadConfig({ PUBLIC_URL: 'https://workshop.example.org' });
    expect(publicUrlNotice(set)).toBe(
      'Links and login cards use https://workshop.example.org (PUBLIC_URL).\n',
    );
  });

  it.each([
    ['http://localhost:8080', true],
    ['http://127.0.0.1', true],
    ['http://127.1.2.3:80', true],
    ['http://[::1]:8080', true],
    ['http://0.0.0.0:8080', true],
    ['http://app.localhost', true],
    ['http://192.168.1.20:8080', false],
    ['https://workshop.example.org', false],
    ['http://localhost.example.org', false],
  ])('%s is local-only: %s', (url, local) => {
    expect(isLocalOnly(url)).toBe(local);
  });
});
