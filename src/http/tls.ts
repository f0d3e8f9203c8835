/**
 * The server's certificate: read TLS_CERT / TLS_KEY, check them the way a browser and OpenSSL
 * would, and explain every problem in one sentence before anything listens. The same loader runs
 * again on SIGHUP, where a failure keeps the old certificate.
 */
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import { StartupError, errorCode, processUser } from '../startup-error.js';

/** Warn when the certificate expires within this many days (renewal has probably failed). */
export const EXPIRY_WARNING_DAYS = 14;

const DAY_MS = 86_400_000;

export interface TlsMaterial {
  /** The PEM certificate file as read: the server certificate first, then the chain. */
  cert: Buffer;
  key: Buffer;
  /** The server (first) certificate. */
  leaf: X509Certificate;
  notAfter: Date;
  /** Things worth a warning in the log that do not stop the server. */
  warnings: string[];
}

/** A short description for logs: subject, serial number and expiry. */
export function describeCertificate(m: TlsMaterial): Record<string, string> {
  return {
    subject: m.leaf.subject.replace(/\n/g, ', '),
    names: m.leaf.subjectAltName ?? '',
    serial: m.leaf.serialNumber,
    expires: m.notAfter.toISOString(),
  };
}

function readPemFile(variable: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    const code = errorCode(err);
    if (code === 'ENOENT') throw new StartupError(`${variable} file ${path} does not exist.`);
    if (code === 'EACCES' || code === 'EPERM') {
      throw new StartupError(
        `${variable} file ${path} cannot be read by user ${processUser()} (permission denied): give that user read access, e.g. with a group (see "HTTPS" in docs/admin-guide.md).`,
      );
    }
    if (code === 'EISDIR') throw new StartupError(`${variable} ${path} is a folder, not a PEM file.`);
    throw new StartupError(`${variable} file ${path} cannot be read: ${(err as Error).message}.`);
  }
}

function parseCertificate(path: string, pem: Buffer): X509Certificate {
  const text = pem.toString('latin1');
  if (!text.includes('-----BEGIN CERTIFICATE-----')) {
    if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(text)) {
      throw new StartupError(
        `TLS_CERT file ${path} holds a private key, not a certificate: are TLS_CERT and TLS_KEY swapped?`,
      );
    }
    throw new StartupError(
      `TLS_CERT file ${path} is not a PEM certificate (no "-----BEGIN CERTIFICATE-----" line; convert DER files with "openssl x509 -in cert.der -inform der -out cert.pem").`,
    );
  }
  try {
    return new X509Certificate(pem);
  } catch {
    throw new StartupError(`TLS_CERT file ${path} holds a damaged certificate that cannot be parsed.`);
  }
}

function parseKey(path: string, pem: Buffer): KeyObject {
  const text = pem.toString('latin1');
  if (text.includes('-----BEGIN ENCRYPTED PRIVATE KEY-----') || text.includes('Proc-Type: 4,ENCRYPTED')) {
    throw new StartupError(
      `TLS_KEY file ${path} is protected by a passphrase, which the server cannot ask for: decrypt it once with "openssl pkey -in ${path} -out key.pem" and keep that file readable only by the service user.`,
    );
  }
  if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(text)) {
    if (text.includes('-----BEGIN CERTIFICATE-----')) {
      throw new StartupError(
        `TLS_KEY file ${path} holds a certificate, not a private key: are TLS_CERT and TLS_KEY swapped?`,
      );
    }
    throw new StartupError(
      `TLS_KEY file ${path} is not a PEM private key (no "-----BEGIN ... PRIVATE KEY-----" line).`,
    );
  }
  try {
    return createPrivateKey(pem);
  } catch {
    throw new StartupError(`TLS_KEY file ${path} holds a damaged private key that cannot be parsed.`);
  }
}

/**
 * Reads and checks the certificate and key. Throws a {@link StartupError} for a missing,
 * unreadable, non-PEM or encrypted file, a key that does not belong to the certificate, or a
 * certificate that is expired or not yet valid. `publicHost` (PUBLIC_URL's host) adds a warning
 * when the certificate does not name it.
 */
export function loadTlsMaterial(
  certPath: string,
  keyPath: string,
  opts: { now?: Date; publicHost?: string | undefined } = {},
): TlsMaterial {
  const now = opts.now ?? new Date();
  const cert = readPemFile('TLS_CERT', certPath);
  const key = readPemFile('TLS_KEY', keyPath);
  const leaf = parseCertificate(certPath, cert);
  const keyObject = parseKey(keyPath, key);
  if (!leaf.checkPrivateKey(keyObject)) {
    throw new StartupError(
      `TLS_KEY ${keyPath} does not belong to the certificate in TLS_CERT ${certPath}: use the key the certificate was issued for (with certbot: privkey.pem from the same folder as fullchain.pem).`,
    );
  }
  const notBefore = new Date(leaf.validFrom);
  const notAfter = new Date(leaf.validTo);
  if (notAfter.getTime() <= now.getTime()) {
    throw new StartupError(
      `The certificate in TLS_CERT ${certPath} expired on ${notAfter.toISOString()}: renew it (e.g. "certbot renew") and start again.`,
    );
  }
  if (notBefore.getTime() > now.getTime()) {
    throw new StartupError(
      `The certificate in TLS_CERT ${certPath} is not valid before ${notBefore.toISOString()}: check this machine's clock.`,
    );
  }
  try {
    // What the HTTPS server will do with them; catches anything OpenSSL refuses beyond the above.
    createSecureContext({ cert, key });
  } catch (err) {
    throw new StartupError(
      `TLS_CERT ${certPath} and TLS_KEY ${keyPath} are refused by OpenSSL: ${(err as Error).message}.`,
    );
  }

  const warnings: string[] = [];
  const soon = expiryWarning(notAfter, now);
  if (soon) warnings.push(soon);
  const inFile = cert.toString('latin1').split('-----BEGIN CERTIFICATE-----').length - 1;
  if (inFile === 1 && leaf.issuer !== leaf.subject) {
    warnings.push(
      'TLS_CERT holds only the server certificate, without the chain: some browsers and tools will not trust it. Use fullchain.pem, not cert.pem.',
    );
  }
  if (opts.publicHost && !nameMatches(leaf, opts.publicHost)) {
    warnings.push(
      `The certificate in TLS_CERT is not issued for ${opts.publicHost} (PUBLIC_URL's host): browsers will refuse it there.`,
    );
  }
  return { cert, key, leaf, notAfter, warnings };
}

/** The warning for a certificate that ends within {@link EXPIRY_WARNING_DAYS}, else null. */
export function expiryWarning(notAfter: Date, now = new Date()): string | null {
  const daysLeft = (notAfter.getTime() - now.getTime()) / DAY_MS;
  if (daysLeft >= EXPIRY_WARNING_DAYS) return null;
  if (daysLeft <= 0) {
    return `The certificate in TLS_CERT expired on ${notAfter.toISOString()}: browsers refuse it now. Renew it, then send the server SIGHUP to load it.`;
  }
  return `The certificate in TLS_CERT expires in ${Math.floor(daysLeft)} days (${notAfter.toISOString()}): renew it, then send the server SIGHUP to load it.`;
}

function nameMatches(leaf: X509Certificate, host: string): boolean {
  const bare = host.replace(/^\[|\]$/g, '');
  if (/^[\d.]+$/.test(bare) || bare.includes(':')) return leaf.checkIP(bare) !== undefined;
  return leaf.checkHost(bare) !== undefined;
}
