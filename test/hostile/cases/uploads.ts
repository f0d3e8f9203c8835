/** `/<user>/upload/image` and `/upload/mask`: ComfyUI's multipart uploads. */
import { LIMITS } from '../live-server.js';
import { requestBytes } from '../raw-http.js';
import type { Case, Ctx, Family, HttpCase } from '../types.js';
import { PATH_ATTACKS, PNG, form, mp } from './util.js';

const B = 'HostileBoundary42';
const up = (
  name: string,
  body: HttpCase['body'],
  expect: HttpCase['expect'],
  extra: Partial<HttpCase> = {},
): Case => ({
  name,
  as: 'alice',
  method: 'POST',
  path: '/alice/upload/image',
  headers: mp(B),
  body,
  expect,
  ...extra,
});

/** The stored name must be a plain name inside the user's space. */
const plainName = (r: { json: unknown }) => {
  const j = r.json as { name?: string; subfolder?: string } | undefined;
  if (!j?.name) return 'no name in the answer';
  return /[/\\]|\.\./.test(j.name) || /\.\./.test(j.subfolder ?? '') ? `unsafe stored name ${j.name}` : null;
};

const basic: Case[] = [
  up(
    'anonymous upload',
    form(B, {}, { name: 'a.png', body: PNG }),
    { status: 401, code: 'UNAUTHORIZED' },
    { as: 'anon' },
  ),
  up(
    'alice uploads into bob space',
    form(B, {}, { name: 'a.png', body: PNG }),
    { status: 403, code: 'FORBIDDEN' },
    { path: '/bob/upload/image' },
  ),
  up(
    'alice uploads a mask into bob space',
    form(B, { original_ref: '{"filename":"a.png"}' }, { name: 'a.png', body: PNG }),
    { status: 403, code: 'FORBIDDEN' },
    { path: '/bob/upload/mask' },
  ),
  up('plain upload works (sanity)', form(B, { overwrite: 'true' }, { name: 'corpus-ok.png', body: PNG }), {
    status: 200,
    check: plainName,
  }),
  up(
    'JSON instead of multipart',
    '{"image":"x"}',
    { status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' },
    { headers: { 'content-type': 'application/json' } },
  ),
  up(
    'no content type at all',
    form(B, {}, { name: 'a.png', body: PNG }),
    { status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' },
    { headers: {} },
  ),
  up(
    'multipart without boundary',
    form(B, {}, { name: 'a.png', body: PNG }),
    { status: 400, code: 'BAD_REQUEST' },
    { headers: { 'content-type': 'multipart/form-data' } },
  ),
  up(
    'multipart with an empty boundary',
    form(B, {}, { name: 'a.png', body: PNG }),
    { status: 400, code: 'BAD_REQUEST' },
    { headers: { 'content-type': 'multipart/form-data; boundary=' } },
  ),
  up('multipart with the wrong boundary', form('OtherBoundary', {}, { name: 'a.png', body: PNG }), {
    status: 400,
    code: 'BAD_REQUEST',
  }),
  up(
    'multipart with a 200-character boundary (longer than RFC 2046 allows; harmless)',
    form('b'.repeat(200), { overwrite: 'true' }, { name: 'long-boundary.png', body: PNG }),
    { status: 200, check: plainName },
    { headers: mp('b'.repeat(200)) },
  ),
  up('multipart body that is not multipart', 'hello, I am not a form', { status: 400, code: 'BAD_REQUEST' }),
  up('multipart whose last part never closes', form(B, {}, { name: 'a.png', body: PNG }, { close: false }), {
    status: 400,
    code: 'BAD_REQUEST',
  }),
  up('empty multipart body', '', { status: 400, code: 'BAD_REQUEST' }),
  // Parts busboy skips (it reads and drops them): larger than a stream's 64 KB buffer, they once hung
  // a request injected as one chunk (see multipart.fuzz.test.ts); over a socket they must get a 400.
  up(
    'a 300 KB part with no Content-Disposition (skipped), no image part',
    Buffer.concat([
      Buffer.from(`--${B}\r\nContent-Type: text/plain\r\n\r\n`),
      Buffer.alloc(300 * 1024, 1),
      Buffer.from(`\r\n--${B}--\r\n`),
    ]),
    { status: 400, code: 'BAD_REQUEST' },
  ),
  up(
    'a 300 KB image part whose file name holds a bare line break (skipped)',
    Buffer.concat([
      Buffer.from(`--${B}\r\nContent-Disposition: form-data; name="image"; filename="a\nb.png"\r\n\r\n`),
      Buffer.alloc(300 * 1024, 1),
      Buffer.from(`\r\n--${B}--\r\n`),
    ]),
    { status: 400, code: 'BAD_REQUEST' },
  ),
  up('form without an image part', form(B, { type: 'input' }), { status: 400, code: 'BAD_REQUEST' }),
  up('file in a part not named image', form(B, {}, { name: 'a.png', body: PNG, field: 'file' }), {
    status: 400,
    code: 'BAD_REQUEST',
  }),
  up('image part with an empty file name', form(B, {}, { name: '', body: PNG }), {
    status: 400,
    code: 'BAD_REQUEST',
  }),
  up('type is not an area', form(B, { type: 'models' }, { name: 'a.png', body: PNG }), {
    status: 400,
    code: 'BAD_REQUEST',
  }),
  up('type is traversal', form(B, { type: '../../bob/input' }, { name: 'a.png', body: PNG }), {
    status: 400,
    code: 'BAD_REQUEST',
  }),
  up(
    'file over UPLOAD_LIMIT',
    form(B, {}, { name: 'big.png', body: Buffer.alloc(LIMITS.UPLOAD_LIMIT + 1024, 1) }),
    { status: 413, code: 'PAYLOAD_TOO_LARGE' },
  ),
  up(
    'five file parts (limit 4)',
    Buffer.concat([
      ...Array.from({ length: 5 }, (_, i) => form(B, {}, { name: `f${i}.png`, body: PNG }, { close: false })),
      Buffer.from(`--${B}--\r\n`),
    ]),
    { status: 413, code: 'PAYLOAD_TOO_LARGE' },
  ),
  up(
    '25 fields (limit 20)',
    form(B, Object.fromEntries(Array.from({ length: 25 }, (_, i) => [`f${i}`, 'v'])), {
      name: 'a.png',
      body: PNG,
    }),
    { status: 413, code: 'PAYLOAD_TOO_LARGE' },
  ),
  up('subfolder field of 100 KB', form(B, { subfolder: 'a/'.repeat(50_000) }, { name: 'a.png', body: PNG }), {
    status: 400,
    code: 'INVALID_PATH',
  }),
  up(
    'file name with ../ is reduced to its base name',
    form(B, { overwrite: 'true' }, { name: '../../../corpus-base.png', body: PNG }),
    { status: 200, check: plainName },
  ),
  up(
    'file name with backslashes is reduced to its base name',
    form(B, { overwrite: 'true' }, { name: '..\\..\\evil.png', body: PNG }),
    { status: 200, check: plainName },
  ),
  up('file name 256 bytes (128 × é)', form(B, {}, { name: `${'é'.repeat(128)}.png`, body: PNG }), {
    status: 400,
    code: 'INVALID_PATH',
  }),
  up('file name 300 ASCII characters', form(B, {}, { name: `${'a'.repeat(300)}.png`, body: PNG }), {
    status: 400,
    code: 'INVALID_PATH',
  }),
  up(
    'file name with a newline (header injection) is cut',
    form(B, { overwrite: 'true' }, { name: 'a\r\nX-Evil: 1.png', body: PNG }),
    { status: 200, check: plainName },
  ),
  up(
    'subfolder names an existing file (collision)',
    (c: Ctx) => form(B, { subfolder: c.aliceFile }, { name: 'inside.png', body: PNG }),
    { status: 409, code: 'CONFLICT' },
  ),
  up(
    'file name collides with an existing folder',
    form(B, { overwrite: 'true' }, { name: 'seeddir', body: PNG }),
    { status: 409, code: 'CONFLICT' },
  ),
  up(
    'mask: original_ref not JSON',
    form(B, { original_ref: '{nope' }, { name: 'm.png', body: PNG }),
    { status: 400, code: 'BAD_REQUEST' },
    { path: '/alice/upload/mask' },
  ),
  up(
    'mask: original_ref traversal',
    form(
      B,
      { original_ref: '{"filename":"../../bob/input/x.png","type":"input"}' },
      { name: 'm.png', body: PNG },
    ),
    { status: 400, code: 'INVALID_PATH' },
    { path: '/alice/upload/mask' },
  ),
  up(
    'mask: original_ref absolute',
    form(B, { original_ref: '{"filename":"/etc/passwd"}' }, { name: 'm.png', body: PNG }),
    { status: 400, code: 'INVALID_PATH' },
    { path: '/alice/upload/mask' },
  ),
  up(
    'mask: original_ref subfolder traversal',
    form(
      B,
      { original_ref: '{"filename":"x.png","subfolder":"../../bob/input"}' },
      { name: 'm.png', body: PNG },
    ),
    { status: 400, code: 'INVALID_PATH' },
    { path: '/alice/upload/mask' },
  ),
  up(
    'mask: original_ref bad type',
    form(B, { original_ref: '{"filename":"x.png","type":"secrets"}' }, { name: 'm.png', body: PNG }),
    { status: 400, code: 'BAD_REQUEST' },
    { path: '/alice/upload/mask' },
  ),
  up(
    'mask: original_ref nested 50,000 deep',
    form(B, { original_ref: '['.repeat(50_000) }, { name: 'm.png', body: PNG }),
    { status: 400, code: 'BAD_REQUEST' },
    { path: '/alice/upload/mask' },
  ),
];

/** Every path-attack form as the subfolder field (decoded: form fields are not URL-encoded). */
const subfolders: Case[] = PATH_ATTACKS.filter((a) => a.code === 'INVALID_PATH').map((a) =>
  up(
    `subfolder ${a.form}`,
    form(B, { subfolder: decodeURIComponentSafe(a.value) }, { name: 'a.png', body: PNG }),
    {
      status: 400,
      code: 'INVALID_PATH',
    },
  ),
);

function decodeURIComponentSafe(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** Raw-socket uploads: bodies that stop, trickle or lie about their length. */
const head = (c: Ctx, length: number, boundary = B) =>
  requestBytes('POST', '/alice/upload/image', c.host, {
    ...c.headers('alice'),
    ...mp(boundary),
    'content-length': String(length),
  });
const filePartHead = Buffer.from(
  `--${B}\r\nContent-Disposition: form-data; name="image"; filename="never.png"\r\nContent-Type: image/png\r\n\r\n`,
);

const raw: Case[] = [
  ...[0, 1, 2].map((i): Case => ({
    kind: 'raw',
    name: `file part that never ends, connection dropped (#${i + 1})`,
    steps: (c) => [head(c, 100_000), filePartHead, PNG, { pause: 150 }, 'destroy'],
    expect: { closed: true, withinMs: 5000 },
  })),
  {
    kind: 'raw',
    name: 'file part that never ends, then a second field, connection dropped',
    steps: (c) => [
      head(c, 100_000),
      filePartHead,
      PNG,
      `\r\n--${B}\r\nContent-Disposition: form-data; name="type"\r\n\r\ninp`,
      { pause: 150 },
      'destroy',
    ],
    expect: { closed: true, withinMs: 5000 },
  },
  {
    kind: 'raw',
    name: 'file part that never ends, client half-closes',
    steps: (c) => [head(c, 100_000), filePartHead, PNG, 'end'],
    expect: { status: 400 },
  },
  // The live server runs with BODY_IDLE_TIMEOUT_MS=3000 and REQUEST_TIMEOUT_MS=8000; Node checks
  // the whole-request time only every 30 s, so a steady trickle is cut 8–38 s after it began.
  {
    kind: 'raw',
    name: 'Content-Length larger than the body, then silence (trickle timeout)',
    steps: (c) => [head(c, 100_000), filePartHead, PNG],
    expect: { closed: true, withinMs: 15_000 },
    timeoutMs: 20_000,
  },
  {
    kind: 'raw',
    name: 'upload trickling one byte per 500 ms (slow body)',
    steps: (c) => [
      head(c, 100_000),
      ...Array.from({ length: 100 }, (_, i) => [Buffer.from([65 + (i % 26)]), { pause: 500 }]).flat(),
    ],
    expect: { closed: true, withinMs: 44_000 },
    timeoutMs: 52_000,
  },
];

export const uploads: Family = { family: 'uploads', cases: [...basic, ...subfolders, ...raw] };
