/**
 * Fuzzing the upload routes' multipart parsing (issue 10): random forms (odd field names, file
 * names with traversal, NUL, unicode, over-long bytes), random boundaries and Content-Types, then
 * truncated, spliced or corrupted. Never a 5xx, always a JSON answer, nothing written outside the
 * user's space and no staged upload left behind.
 */
import { Readable } from 'node:stream';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHarness, storedFiles, tinyPng, type Harness } from '../../test/support/gateway-kit.js';

let h: Harness;
let A: string;

beforeAll(async () => {
  h = await startHarness({ UPLOAD_LIMIT: '64kb' });
  A = await h.addUser('user001');
  await h.addUser('user002');
}, 60_000);

afterAll(async () => {
  await h.close();
});

const nasty = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.constantFrom(
    '../x.png',
    '..',
    '/abs.png',
    'a\\b.png',
    'a\u0000b.png',
    '%2e%2e/x.png',
    'é'.repeat(130),
    '😀'.repeat(70),
    'x'.repeat(300),
    'ok.png',
    'sub/dir/ok.png',
    'C:/win.png',
    '',
  ),
);

const part = fc.record({
  file: fc.boolean(),
  name: fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom('image', 'type', 'subfolder', 'overwrite', 'original_ref') },
    { weight: 1, arbitrary: fc.constantFrom('__proto__', 'constructor', 'hasOwnProperty', '') },
    { weight: 1, arbitrary: fc.string({ maxLength: 10 }) },
  ),
  filename: nasty,
  value: fc.oneof(
    fc.constantFrom('input', 'output', 'temp', 'bogus', 'true', '{"filename":"../../user002/x.png"}'),
    nasty,
  ),
  big: fc.nat(5).map((n) => n === 0),
  contentType: fc.constantFrom('image/png', 'application/json', 'text/plain', ''),
});

const mutation = fc.oneof(
  fc.constant({ kind: 'none' as const }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.double({ min: 0, max: 1, noNaN: true }) }),
  fc.record({
    kind: fc.constant('insert' as const),
    at: fc.double({ min: 0, max: 1, noNaN: true }),
    bytes: fc.uint8Array({ maxLength: 64 }),
  }),
  fc.constant({ kind: 'lf' as const }),
  fc.constant({ kind: 'no-closing' as const }),
);

const headerStyle = fc.constantFrom('ok', 'quoted', 'missing', 'wrong', 'empty', 'not-multipart', 'extra');

function buildBody(boundary: string, parts: PartSpec[]): Buffer {
  const chunks: Buffer[] = [];
  for (const p of parts) {
    const disposition = p.file
      ? `form-data; name="${p.name}"; filename="${p.filename}"`
      : `form-data; name="${p.name}"`;
    chunks.push(Buffer.from(`--${boundary}\r\nContent-Disposition: ${disposition}\r\n`));
    if (p.contentType) chunks.push(Buffer.from(`Content-Type: ${p.contentType}\r\n`));
    chunks.push(Buffer.from('\r\n'));
    chunks.push(
      p.file ? (p.big ? Buffer.alloc(70 * 1024, 1) : tinyPng(p.value.length)) : Buffer.from(p.value),
    );
    chunks.push(Buffer.from('\r\n'));
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return Buffer.concat(chunks);
}

/**
 * The body in 16 KB pieces, as a socket hands it over (TLS records are at most 16 KB; a plain
 * socket read at most 64 KB). Injected as one buffer it reaches busboy as a single chunk, which no
 * socket produces, and a part busboy skips (a bare line break in its headers, no
 * Content-Disposition) that is larger than a stream's 64 KB buffer and ends in that same chunk
 * never lets busboy's write finish: that request then waits for ever. Over a real socket the same
 * bytes get their 400 (checked with the seed that found it, 2886219044).
 */
function socketChunks(body: Buffer): Readable {
  const chunks: Buffer[] = [];
  for (let i = 0; i < body.length; i += 16 * 1024) chunks.push(body.subarray(i, i + 16 * 1024));
  return Readable.from(chunks, { objectMode: false });
}

type PartSpec = {
  file: boolean;
  name: string;
  filename: string;
  value: string;
  big: boolean;
  contentType: string;
};

function mutate(body: Buffer, m: Mutation): Buffer {
  switch (m.kind) {
    case 'truncate':
      return body.subarray(0, Math.floor(body.length * m.at));
    case 'insert': {
      const i = Math.floor(body.length * m.at);
      return Buffer.concat([body.subarray(0, i), Buffer.from(m.bytes), body.subarray(i)]);
    }
    case 'lf':
      return Buffer.from(body.toString('latin1').replaceAll('\r\n', '\n'), 'latin1');
    case 'no-closing':
      return body.subarray(0, Math.max(0, body.length - 8));
    default:
      return body;
  }
}

type Mutation =
  | { kind: 'none' }
  | { kind: 'truncate'; at: number }
  | { kind: 'insert'; at: number; bytes: Uint8Array }
  | { kind: 'lf' }
  | { kind: 'no-closing' };

function contentType(style: string, boundary: string): string {
  switch (style) {
    case 'quoted':
      return `multipart/form-data; boundary="${boundary}"`;
    case 'missing':
      return 'multipart/form-data';
    case 'wrong':
      return `multipart/form-data; boundary=${boundary}x`;
    case 'empty':
      return 'multipart/form-data; boundary=';
    case 'not-multipart':
      return 'application/octet-stream';
    case 'extra':
      return `multipart/form-data; charset=utf-8; boundary=${boundary}; x=y`;
    default:
      return `multipart/form-data; boundary=${boundary}`;
  }
}

describe('multipart parsing under fuzzing', () => {
  it('never answers 5xx, always JSON, writes only inside the user space, leaves no staged file', async () => {
    const before = new Set(await storedFiles(h));
    await fc.assert(
      fc.asyncProperty(
        fc.stringMatching(/^[A-Za-z0-9'()+_,\-.:=?]{1,70}$/),
        fc.array(part, { maxLength: 6 }),
        mutation,
        headerStyle,
        fc.constantFrom(
          '/user001/upload/image',
          '/user001/api/upload/image',
          '/user001/upload/mask',
          '/user001/api/upload/mask',
        ),
        async (boundary, parts, m, style, url) => {
          const payload = mutate(buildBody(boundary, parts), m);
          const r = await h.app.inject({
            method: 'POST',
            url,
            headers: {
              authorization: A,
              'content-type': contentType(style, boundary),
              'content-length': String(payload.length),
            },
            payload: socketChunks(payload),
          });
          expect(r.statusCode, r.body).toBeLessThan(500);
          expect(r.headers['content-type']).toMatch(/json/);
          expect(r.body).not.toMatch(/at .*\.(ts|js):\d+/);
        },
      ),
      { numRuns: 400 },
    );
    const after = (await storedFiles(h)).filter((f) => !before.has(f));
    for (const f of after)
      expect(
        f.startsWith('user001/input/') || f.startsWith('user001/output/') || f.startsWith('user001/temp/'),
        f,
      ).toBe(true);
    expect(after.filter((f) => f.includes('.uploads') || f.endsWith('.partial'))).toEqual([]);
  }, 120_000);
});
