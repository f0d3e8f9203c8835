/**
 * Fuzzing path handling (issue 10): random strings made of `..`, `/`, `\`, `%2e`, `%2f`, NUL,
 * control characters, unicode and long runs, fed to safeRelativePath / userFileKey directly and
 * through the userdata routes' percent-decoding. Each either gives a key inside the user's own
 * space or INVALID_PATH; nothing ever escapes.
 */
import { posix } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { AppError } from '../errors.js';
import { pyUnquote } from '../gateway/http-util.js';
import { FILE_AREAS } from './file-store.js';
import { MAX_NAME_BYTES, MAX_PATH_BYTES, safeRelativePath, userFileKey } from './safe-path.js';

const piece = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.constantFrom('..', '.', '/', '//', '\\', '%2e', '%2E', '%2f', '%5c', '%00', '%'),
  },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      'a',
      'b.png',
      'workflows',
      'é',
      '😀',
      '\u0000',
      '\u001f',
      '\u007f',
      'C:',
      ' ',
      '~',
    ),
  },
  { weight: 2, arbitrary: fc.string({ maxLength: 8 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 8 }) },
  { weight: 1, arbitrary: fc.nat(300).map((n) => 'x'.repeat(n)) },
  { weight: 1, arbitrary: fc.nat(140).map((n) => 'é'.repeat(n)) },
);
const pathLike = fc.array(piece, { maxLength: 12 }).map((ps) => ps.join(''));

/** Either a safe relative path, or INVALID_PATH: the invariant every caller relies on. */
function checkRelative(input: string[]): string | null {
  let rel: string;
  try {
    rel = safeRelativePath(...input);
  } catch (err) {
    expect(err).toBeInstanceOf(AppError);
    expect((err as AppError).code).toBe('INVALID_PATH');
    return null;
  }
  if (rel === '') return rel;
  expect(rel.startsWith('/')).toBe(false);
  // eslint-disable-next-line no-control-regex
  expect(rel).not.toMatch(/[\u0000-\u001f\u007f\\]/);
  expect(rel).not.toMatch(/^[a-zA-Z]:/);
  const segments = rel.split('/');
  for (const s of segments) {
    expect(s).not.toBe('');
    expect(s).not.toBe('.');
    expect(s).not.toBe('..');
    expect(Buffer.byteLength(s)).toBeLessThanOrEqual(MAX_NAME_BYTES);
  }
  expect(Buffer.byteLength(rel)).toBeLessThanOrEqual(MAX_PATH_BYTES);
  // Resolved under a root, it stays under that root.
  expect(posix.resolve('/root', rel).startsWith('/root/')).toBe(true);
  // Idempotent: a checked path passes the check unchanged (the stores re-check every key).
  expect(safeRelativePath(rel)).toBe(rel);
  return rel;
}

describe('path handling under fuzzing', () => {
  it('safeRelativePath: a safe relative path or INVALID_PATH', () => {
    fc.assert(
      fc.property(fc.array(pathLike, { minLength: 1, maxLength: 3 }), (parts) => {
        checkRelative(parts);
      }),
      { numRuns: 3000 },
    );
  });

  it('userdata paths (percent-decoded once more, as ComfyUI does): same invariant', () => {
    fc.assert(
      fc.property(pathLike, (raw) => {
        checkRelative([raw.includes('%') ? pyUnquote(raw) : raw]);
      }),
      { numRuns: 3000 },
    );
  });

  it('userFileKey: always <user>/<area>/… of that user and area, or INVALID_PATH', () => {
    fc.assert(
      fc.property(
        fc.constantFrom('user001', 'u', 'a-b_c'),
        fc.constantFrom(...FILE_AREAS),
        fc.array(pathLike, { maxLength: 3 }),
        (user, area, parts) => {
          let key: string;
          try {
            key = userFileKey(user, area, ...parts);
          } catch (err) {
            expect((err as AppError).code).toBe('INVALID_PATH');
            return;
          }
          expect(key === `${user}/${area}` || key.startsWith(`${user}/${area}/`)).toBe(true);
          expect(posix.resolve('/files', key).startsWith(`/files/${user}/${area}`)).toBe(true);
        },
      ),
      { numRuns: 3000 },
    );
  });
});
