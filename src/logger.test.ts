import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { startHarness } from '../test/support/app-harness.js';
import { buildApp } from './app.js';
import { SignInTokens } from './auth/sign-in-tokens.js';
import { createLogger, redactUrl } from './logger.js';

describe('logs never hold a sign-in link’s secret', () => {
  it('redactUrl keeps the user and drops the secret', () => {
    expect(redactUrl('/login/t/user001.AbC-_x')).toBe('/login/t/user001.[redacted]');
    expect(redactUrl('/login/t/user001.AbC?x=1')).toBe('/login/t/user001.[redacted]?x=1');
    expect(redactUrl('/user001/api/prompt')).toBe('/user001/api/prompt');
    expect(redactUrl('/login?next=/login/t/a.b')).toBe('/login?next=/login/t/a.b');
  });

  it('the request log of a sign-in shows the path without the token', async () => {
    const h = await startHarness();
    const lines: string[] = [];
    const dest = new Writable({
      write(chunk, _enc, cb) {
        lines.push(String(chunk));
        cb();
      },
    });
    const app = await buildApp({ ...h.services, logger: createLogger('info', dest as never) });
    try {
      const { account } = await h.services.accounts.create('alice', 'participant');
      const { token } = await new SignInTokens(h.services.store).issue(account);
      const res = await app.inject({ url: `/login/t/${token}` });
      expect(res.statusCode).toBe(303);
      const log = lines.join('');
      expect(log).toContain('/login/t/alice.[redacted]');
      expect(log).not.toContain(token.split('.')[1]);
    } finally {
      await app.close();
      await h.close();
    }
  });
});
