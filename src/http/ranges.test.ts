import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decideFileResponse, parseRange, validatorsOf } from './ranges.js';

describe('parseRange', () => {
  it('reads the three forms of a single range (RFC 9110 §14.1.2)', () => {
    expect(parseRange('bytes=0-499', 1000)).toEqual({ kind: 'range', range: { start: 0, end: 499 } });
    expect(parseRange('bytes=500-', 1000)).toEqual({ kind: 'range', range: { start: 500, end: 999 } });
    expect(parseRange('bytes=-200', 1000)).toEqual({ kind: 'range', range: { start: 800, end: 999 } });
    expect(parseRange('bytes=0-0', 1000)).toEqual({ kind: 'range', range: { start: 0, end: 0 } });
    expect(parseRange('bytes=0-1', 1000)).toEqual({ kind: 'range', range: { start: 0, end: 1 } });
    expect(parseRange('Bytes = 10 - 20 ', 1000)).toEqual({ kind: 'range', range: { start: 10, end: 20 } });
  });

  it('clamps an end past the file and a suffix longer than the file', () => {
    expect(parseRange('bytes=900-5000', 1000)).toEqual({ kind: 'range', range: { start: 900, end: 999 } });
    expect(parseRange('bytes=-5000', 1000)).toEqual({ kind: 'range', range: { start: 0, end: 999 } });
    expect(parseRange('bytes=0-99999999999999999999', 10)).toEqual({
      kind: 'range',
      range: { start: 0, end: 9 },
    });
  });

  it('is unsatisfiable when the range starts at or past the end, or asks for the last 0 bytes', () => {
    expect(parseRange('bytes=1000-', 1000)).toEqual({ kind: 'unsatisfiable' });
    expect(parseRange('bytes=1000-2000', 1000)).toEqual({ kind: 'unsatisfiable' });
    expect(parseRange('bytes=99999999999999999999-', 1000)).toEqual({ kind: 'unsatisfiable' });
    expect(parseRange('bytes=-0', 1000)).toEqual({ kind: 'unsatisfiable' });
    expect(parseRange('bytes=0-', 0)).toEqual({ kind: 'unsatisfiable' });
  });

  it('ignores what it does not serve: other units, bad syntax, several ranges', () => {
    for (const h of [
      'items=0-5',
      'bytes',
      'bytes=',
      'bytes=abc',
      'bytes=5-3',
      'bytes=-',
      'bytes=1-2-3',
      'bytes=0x10-20',
      'bytes=+1-2',
      'bytes=0-1,5-6',
      'bytes=0-0,-1',
    ])
      expect(parseRange(h, 1000), h).toEqual({ kind: 'none' });
    expect(parseRange(undefined, 1000)).toEqual({ kind: 'none' });
    expect(parseRange('bytes=-5', 0)).toEqual({ kind: 'none' });
    expect(parseRange(`bytes=${'1'.repeat(2000)}-`, 1000)).toEqual({ kind: 'none' });
  });

  it('property: any header yields a slice inside [0, size), 416 or nothing, and never throws', () => {
    const rangeLike = fc.oneof(
      fc.string(),
      fc
        .tuple(
          fc.constantFrom('bytes=', 'BYTES=', 'bytes =', 'bytes= ', 'items='),
          fc.array(
            fc.tuple(
              fc.option(fc.oneof(fc.nat(), fc.bigInt({ min: 0n, max: 10n ** 30n })), { nil: undefined }),
              fc.option(fc.oneof(fc.nat(), fc.integer()), { nil: undefined }),
            ),
            { minLength: 0, maxLength: 3 },
          ),
        )
        .map(([unit, parts]) => unit + parts.map(([a, b]) => `${a ?? ''}-${b ?? ''}`).join(',')),
    );
    fc.assert(
      fc.property(rangeLike, fc.nat({ max: 2 ** 40 }), (header, size) => {
        const r = parseRange(header, size);
        if (r.kind === 'range') {
          expect(Number.isSafeInteger(r.range.start)).toBe(true);
          expect(Number.isSafeInteger(r.range.end)).toBe(true);
          expect(r.range.start).toBeGreaterThanOrEqual(0);
          expect(r.range.start).toBeLessThanOrEqual(r.range.end);
          expect(r.range.end).toBeLessThan(size);
        } else expect(['none', 'unsatisfiable']).toContain(r.kind);
      }),
      { numRuns: 2000 },
    );
  });

  it('property: a well-formed a-b inside the file is served exactly', () => {
    fc.assert(
      fc.property(fc.nat({ max: 1e12 }), fc.nat({ max: 1e12 }), fc.nat({ max: 1e12 }), (a, len, extra) => {
        const size = a + len + 1 + extra;
        expect(parseRange(`bytes=${a}-${a + len}`, size)).toEqual({
          kind: 'range',
          range: { start: a, end: a + len },
        });
      }),
    );
  });
});

describe('decideFileResponse', () => {
  const v = validatorsOf(1000, Date.UTC(2026, 0, 2, 3, 4, 5, 678));
  const lm = v.lastModified.toUTCString();

  it('makes a strong ETag from size and mtime, and Last-Modified in whole seconds', () => {
    expect(v.etag).toMatch(/^"[0-9a-f]+-[0-9a-f]+"$/);
    expect(validatorsOf(1001, Date.UTC(2026, 0, 2, 3, 4, 5, 678)).etag).not.toBe(v.etag);
    expect(validatorsOf(1000, Date.UTC(2026, 0, 2, 3, 4, 5, 679)).etag).not.toBe(v.etag);
    expect(lm).toBe('Fri, 02 Jan 2026 03:04:05 GMT');
  });

  it('answers 200, 206 and 416 by the Range', () => {
    expect(decideFileResponse({}, 1000, v)).toEqual({ status: 200 });
    expect(decideFileResponse({ range: 'bytes=10-19' }, 1000, v)).toEqual({
      status: 206,
      range: { start: 10, end: 19 },
    });
    expect(decideFileResponse({ range: 'bytes=2000-' }, 1000, v)).toEqual({ status: 416 });
    expect(decideFileResponse({ range: 'bytes=0-1,4-5' }, 1000, v)).toEqual({ status: 200 });
  });

  it('If-Range: the same ETag or date keeps the range, anything else gets the whole file', () => {
    const range = 'bytes=10-19';
    expect(decideFileResponse({ range, ifRange: v.etag }, 1000, v).status).toBe(206);
    expect(decideFileResponse({ range, ifRange: lm }, 1000, v).status).toBe(206);
    expect(decideFileResponse({ range, ifRange: '"other"' }, 1000, v).status).toBe(200);
    expect(decideFileResponse({ range, ifRange: `W/${v.etag}` }, 1000, v).status).toBe(200);
    expect(decideFileResponse({ range, ifRange: 'Thu, 01 Jan 2026 00:00:00 GMT' }, 1000, v).status).toBe(200);
    expect(decideFileResponse({ range, ifRange: 'garbage' }, 1000, v).status).toBe(200);
    expect(decideFileResponse({ range: 'bytes=5000-', ifRange: '"other"' }, 1000, v).status).toBe(200);
  });

  it('If-None-Match (weak comparison) and If-Modified-Since give 304; If-None-Match wins', () => {
    expect(decideFileResponse({ ifNoneMatch: v.etag }, 1000, v).status).toBe(304);
    expect(decideFileResponse({ ifNoneMatch: `"x", W/${v.etag}` }, 1000, v).status).toBe(304);
    expect(decideFileResponse({ ifNoneMatch: '*' }, 1000, v).status).toBe(304);
    expect(decideFileResponse({ ifNoneMatch: '"x"' }, 1000, v).status).toBe(200);
    expect(decideFileResponse({ ifModifiedSince: lm }, 1000, v).status).toBe(304);
    expect(decideFileResponse({ ifModifiedSince: 'Thu, 01 Jan 2026 00:00:00 GMT' }, 1000, v).status).toBe(
      200,
    );
    expect(decideFileResponse({ ifModifiedSince: 'nonsense' }, 1000, v).status).toBe(200);
    expect(decideFileResponse({ ifNoneMatch: '"x"', ifModifiedSince: lm }, 1000, v).status).toBe(200);
    expect(decideFileResponse({ ifNoneMatch: v.etag, range: 'bytes=0-1' }, 1000, v).status).toBe(304);
  });

  it('property: never throws, and a 206 is always inside the file', () => {
    const header = fc.option(fc.string(), { nil: undefined });
    fc.assert(
      fc.property(
        header,
        header,
        header,
        header,
        fc.nat({ max: 2 ** 40 }),
        (range, ifRange, inm, ims, size) => {
          const d = decideFileResponse(
            { range, ifRange, ifNoneMatch: inm, ifModifiedSince: ims },
            size,
            validatorsOf(size, 1_700_000_000_000),
          );
          expect([200, 206, 304, 416]).toContain(d.status);
          if (d.status === 206) expect(d.range.end).toBeLessThan(size);
        },
      ),
      { numRuns: 1000 },
    );
  });
});
