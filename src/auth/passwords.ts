import bcrypt from 'bcryptjs';
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/** bcrypt cost. 10 keeps a login near 50–100 ms on a small VPS; htpasswd -B uses 5 by default. */
export const BCRYPT_COST = 10;

/**
 * A bcrypt hash of a password nobody knows, compared against when the user does not exist so a
 * failed login takes the same time whether or not the name is real.
 */
const DUMMY_HASH = bcrypt.hashSync(randomBytes(16).toString('hex'), BCRYPT_COST);

/** Where bcrypt runs: directly (CLI, tests) or through the server's bounded pool (`BcryptPool`). */
export interface PasswordHasher {
  hash(password: string): Promise<string>;
  compare(password: string, hash: string): Promise<boolean>;
}

/** bcryptjs on the calling thread, unbounded: for the CLI and one-off work, not for the server. */
export const directHasher: PasswordHasher = {
  hash: (password) => bcrypt.hash(password, BCRYPT_COST),
  compare: (password, hash) => bcrypt.compare(password, hash),
};

export function hashPassword(password: string, hasher: PasswordHasher = directHasher): Promise<string> {
  return hasher.hash(password);
}

/** Constant-time check (bcrypt compares in constant time); `hash` null still costs one bcrypt. */
export async function verifyPassword(
  password: string,
  hash: string | null,
  hasher: PasswordHasher = directHasher,
): Promise<boolean> {
  const ok = await hasher.compare(password, hash ?? DUMMY_HASH);
  return ok && hash !== null;
}

/** A random password of 20 characters from an unambiguous alphabet (~115 bits). */
export function generatePassword(length = 20): string {
  const alphabet = 'abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789';
  const bytes = randomBytes(length * 2);
  let out = '';
  // Rejection sampling keeps every character equally likely.
  for (const b of bytes) {
    if (out.length === length) break;
    if (b < 256 - (256 % alphabet.length)) out += alphabet[b % alphabet.length];
  }
  return out.length === length ? out : generatePassword(length);
}

/** A random opaque token for workers and scripts. */
export function generateToken(): string {
  return randomBytes(32).toString('base64url');
}

/** Tokens are stored hashed; sha256 suffices because tokens carry 256 bits of randomness. */
export function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

/** Compares two strings in time independent of where they differ. */
export function safeEqual(a: string, b: string): boolean {
  const ha = createHash('sha256').update(a).digest();
  const hb = createHash('sha256').update(b).digest();
  return timingSafeEqual(ha, hb);
}
