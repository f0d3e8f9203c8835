/* eslint-disable no-control-regex -- these tests are about control characters */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { safeNextPath } from './next-path.js';

const BASE = 'https://workshop.example';

/** What a lenient browser makes of a `Location` value (WHATWG URL parsing of a special scheme). */
function browserOrigin(location: string): string | null {
  const cleaned = location
    .replace(/[\t\n\r]/g, '')
    .replace(/^[\u0000-\u0020]+|[\u0000-\u0020]+$/g, '')
    .replace(/\\/g, '/');
  try {
    return new URL(cleaned, BASE).origin;
  } catch {
    return null;
  }
}

/** Strings built from the characters open redirects are made of, plus anything at all. */
const tricky = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc
    .array(
      fc.constantFrom(
        '/',
        '//',
        '\\',
        '%2f',
        '%2F',
        '%5c',
        '%09',
        '%0a',
        '%0d',
        '%25',
        '%00',
        '\t',
        '\n',
        '\r',
        ' ',
        '\u00a0',
        '\u3000',
        '\u2028',
        '\ufeff',
        ':',
        '@',
        '.',
        '..',
        '?',
        '#',
        'evil.example',
        'http:',
        'https:',
        'javascript:',
        'alice',
        'x',
        '%e3%80%80',
        '%c0%af',
        '%ZZ',
      ),
      { maxLength: 12 },
    )
    .map((parts) => parts.join('')),
  fc.webUrl().map((u) => u.replace(/^https?:/, '')),
);

describe('safeNextPath', () => {
  it('returns either nothing or a path a browser keeps on our own site, whatever it is given', () => {
    fc.assert(
      fc.property(tricky, (next) => {
        const out = safeNextPath(next);
        if (out === null) return;
        expect(out).toBe(next);
        expect(out.startsWith('/') && !out.startsWith('//')).toBe(true);
        expect(browserOrigin(out)).toBe(BASE);
        // Decoded once more (a proxy or framework might), still local.
        let decoded = out;
        try {
          decoded = decodeURIComponent(out);
        } catch {
          /* not decodable: nothing more to check */
        }
        expect(browserOrigin(decoded)).toBe(BASE);
        expect(/[\u0000-\u0020\u007f\\]/.test(decoded)).toBe(false);
      }),
      { numRuns: 5000 },
    );
  });

  it('keeps ordinary local paths', () => {
    for (const p of ['/', '/alice/', '/admin/', '/alice/?tab=queue#x', '/alice/view%3Ffile.png']) {
      expect(safeNextPath(p)).toBe(p);
    }
  });

  it('refuses the known tricks', () => {
    for (const p of [
      '/\t/evil.example',
      '/%09/evil.example',
      '//evil.example',
      '/\\evil.example',
      '/%5Cevil.example',
      '/%2F%2Fevil.example',
      '/%252F%252Fevil.example',
      'https://evil.example',
      '/alice/\n',
      ' /alice/',
      '/%E3%80%80/evil.example',
      '',
      'alice/',
    ]) {
      expect(safeNextPath(p), JSON.stringify(p)).toBeNull();
    }
  });
});
