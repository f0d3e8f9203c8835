import { z } from 'zod';

/** Lower-case, starts with a letter or digit, at most 32 characters: safe in paths and URLs. */
export const USER_NAME_RE = /^[a-z0-9][a-z0-9_-]{0,31}$/;

/** Names that would collide with the server's own top-level routes. */
export const RESERVED_NAMES = new Set([
  'admin',
  'api',
  'worker',
  'health',
  'ready',
  'metrics',
  'login',
  'logout',
  'static',
  'assets',
]);

export const userNameSchema = z
  .string()
  .regex(
    USER_NAME_RE,
    'user names are 1–32 characters of a-z, 0-9, _ and -, starting with a letter or digit',
  );

/** Account names: a valid user name that is not a reserved route (the `admin` account is allowed). */
export function isValidAccountName(name: string): boolean {
  return USER_NAME_RE.test(name) && (name === 'admin' || !RESERVED_NAMES.has(name));
}
