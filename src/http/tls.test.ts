import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestCa, type IssuedCert } from '../../test/support/certs.js';
import { StartupError } from '../startup-error.js';
import { expiryWarning, loadTlsMaterial } from './tls.js';

let dir: string;
let ca: TestCa;
let ec: IssuedCert;
let rsa: IssuedCert;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'cm-tls-'));
  ca = new TestCa(dir);
  ec = ca.issue('ec', { keyType: 'ec' });
  rsa = ca.issue('rsa', { keyType: 'rsa' });
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The StartupError's message, failing the test when something else (or nothing) is thrown. */
function problem(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(StartupError);
    const message = (err as Error).message;
    expect(message.split('\n')).toHaveLength(1);
    return message;
  }
  throw new Error('expected a StartupError');
}

describe('loadTlsMaterial', () => {
  it('accepts an EC and an RSA key with a full chain, without warnings', () => {
    for (const c of [ec, rsa]) {
      const m = loadTlsMaterial(c.fullchain, c.key);
      expect(m.leaf.serialNumber).toBe(c.serial);
      expect(m.warnings).toEqual([]);
    }
  });

  it('names a missing file', () => {
    expect(problem(() => loadTlsMaterial(join(dir, 'nope.pem'), ec.key))).toBe(
      `TLS_CERT file ${join(dir, 'nope.pem')} does not exist.`,
    );
    expect(problem(() => loadTlsMaterial(ec.fullchain, join(dir, 'nope.key')))).toMatch(
      /^TLS_KEY file .* does not exist\.$/,
    );
  });

  it('says a folder is not a PEM file', () => {
    expect(problem(() => loadTlsMaterial(dir, ec.key))).toMatch(/is a folder, not a PEM file/);
  });

  it('explains files that are not PEM, swapped, encrypted or damaged', () => {
    const garbage = join(dir, 'garbage.pem');
    writeFileSync(garbage, 'hello\n');
    expect(problem(() => loadTlsMaterial(garbage, ec.key))).toMatch(
      /^TLS_CERT file .* is not a PEM certificate/,
    );
    expect(problem(() => loadTlsMaterial(ec.fullchain, garbage))).toMatch(
      /^TLS_KEY file .* is not a PEM private key/,
    );
    expect(problem(() => loadTlsMaterial(ec.key, ec.fullchain))).toMatch(
      /are TLS_CERT and TLS_KEY swapped\?$/,
    );

    const damaged = join(dir, 'damaged.pem');
    writeFileSync(damaged, '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n');
    expect(problem(() => loadTlsMaterial(damaged, ec.key))).toMatch(/damaged certificate/);

    const encrypted = join(dir, 'encrypted.key');
    writeFileSync(
      encrypted,
      '-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n',
    );
    expect(problem(() => loadTlsMaterial(ec.fullchain, encrypted))).toMatch(/protected by a passphrase/);
  });

  it('refuses a key that belongs to another certificate', () => {
    expect(problem(() => loadTlsMaterial(ec.fullchain, rsa.key))).toMatch(
      /^TLS_KEY .* does not belong to the certificate in TLS_CERT/,
    );
  });

  it('refuses an expired certificate and one not valid yet, and warns 14 days ahead', () => {
    const old = ca.issue('old', { start: '20200101000000Z', end: '20200201000000Z' });
    expect(problem(() => loadTlsMaterial(old.fullchain, old.key))).toBe(
      `The certificate in TLS_CERT ${old.fullchain} expired on 2020-02-01T00:00:00.000Z: renew it (e.g. "certbot renew") and start again.`,
    );
    const future = ca.issue('future', { start: '20990101000000Z', end: '20990201000000Z' });
    expect(problem(() => loadTlsMaterial(future.fullchain, future.key))).toMatch(
      /is not valid before 2099-01-01.*clock/,
    );

    const soon = ca.issue('soon', { days: 5 });
    const m = loadTlsMaterial(soon.fullchain, soon.key);
    expect(m.warnings).toHaveLength(1);
    expect(m.warnings[0]).toMatch(/^The certificate in TLS_CERT expires in [45] days/);
  });

  it('warns about a certificate without its chain and one not issued for PUBLIC_URL', () => {
    const m = loadTlsMaterial(ec.leaf, ec.key, { publicHost: 'workshop.example.org' });
    expect(m.warnings.join('\n')).toMatch(/without the chain.*fullchain\.pem/);
    expect(m.warnings.join('\n')).toMatch(/not issued for workshop\.example\.org/);
    expect(loadTlsMaterial(ec.fullchain, ec.key, { publicHost: 'localhost' }).warnings).toEqual([]);
  });

  it.runIf(process.getuid?.() !== 0)('says an unreadable key needs read access for this user', () => {
    const locked = join(dir, 'locked.key');
    writeFileSync(locked, readFileSync(ec.key));
    chmodSync(locked, 0o000);
    expect(problem(() => loadTlsMaterial(ec.fullchain, locked))).toMatch(
      /^TLS_KEY file .* cannot be read by user .* \(permission denied\)/,
    );
  });

  it('expiryWarning: nothing 14 days ahead, days left inside that, "expired" after', () => {
    const now = new Date('2026-12-01T00:00:00Z');
    expect(expiryWarning(new Date('2026-12-15T00:00:00Z'), now)).toBeNull();
    expect(expiryWarning(new Date('2026-12-04T12:00:00Z'), now)).toMatch(
      /^The certificate in TLS_CERT expires in 3 days/,
    );
    expect(expiryWarning(new Date('2026-11-30T00:00:00Z'), now)).toMatch(
      /expired on 2026-11-30.*browsers refuse it now/,
    );
  });
});
