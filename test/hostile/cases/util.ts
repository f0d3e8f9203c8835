/** Building blocks shared by the corpus files: path-attack forms, multipart bodies, prompts. */
import { modelFreePrompt } from '../../support/prompts.js';
import type { ErrorCode } from '../../../src/errors.js';

/**
 * Every form of "leave the folder" we try, as it appears in a query value or a path segment
 * (already percent-encoded where a raw byte could not go on the request line). `code` is what a
 * careful server answers when this is the file name: INVALID_PATH when, once decoded as the server
 * decodes it, it could leave the space or is not a possible name; FILE_NOT_FOUND when it is merely
 * an odd name that does not exist (it must be treated literally, never decoded twice).
 */
export const PATH_ATTACKS: { form: string; value: string; code: ErrorCode }[] = [
  { form: '../ relative', value: '../../etc/passwd', code: 'INVALID_PATH' },
  { form: 'deep ../', value: '../../../../../../../../../../etc/passwd', code: 'INVALID_PATH' },
  { form: '%2e%2e%2f encoded', value: '%2e%2e%2f%2e%2e%2fetc%2fpasswd', code: 'INVALID_PATH' },
  { form: '%2E%2E uppercase encoded', value: '%2E%2E%2F%2E%2E%2Fetc%2Fpasswd', code: 'INVALID_PATH' },
  { form: 'mixed ..%2f', value: '..%2f..%2fetc%2fpasswd', code: 'INVALID_PATH' },
  {
    form: '%252e double-encoded (literal name)',
    value: '%252e%252e%252fetc%252fpasswd',
    code: 'FILE_NOT_FOUND',
  },
  { form: 'backslashes', value: '..%5C..%5Cetc%5Cpasswd', code: 'INVALID_PATH' },
  { form: 'backslash only', value: 'sub%5Cx.png', code: 'INVALID_PATH' },
  { form: 'NUL byte', value: 'x.png%00.txt', code: 'INVALID_PATH' },
  { form: 'newline', value: 'x%0A.png', code: 'INVALID_PATH' },
  { form: 'absolute', value: '/etc/passwd', code: 'INVALID_PATH' },
  { form: 'absolute encoded', value: '%2Fetc%2Fpasswd', code: 'INVALID_PATH' },
  { form: 'windows drive', value: 'C:%5Cwindows%5Cwin.ini', code: 'INVALID_PATH' },
  { form: 'dot segments inside', value: 'a/./b/../../../etc/passwd', code: 'INVALID_PATH' },
  {
    form: 'unicode small full stops (lookalike)',
    value: '%EF%B9%92%EF%B9%92%2Fetc%2Fpasswd',
    code: 'FILE_NOT_FOUND',
  },
  {
    form: 'fullwidth dots and slash (lookalike)',
    value: '%EF%BC%8E%EF%BC%8E%EF%BC%8Fetc',
    code: 'FILE_NOT_FOUND',
  },
  {
    form: 'one-dot leaders and division slash (lookalike)',
    value: '%E2%80%A4%E2%80%A4%E2%88%95etc',
    code: 'FILE_NOT_FOUND',
  },
  { form: 'overlong UTF-8 dots', value: '%C0%AE%C0%AE%2Fetc', code: 'FILE_NOT_FOUND' },
  { form: '256-character name', value: 'a'.repeat(256) + '.png', code: 'INVALID_PATH' },
  { form: '256-byte name (128 × é)', value: '%C3%A9'.repeat(128) + '.png', code: 'INVALID_PATH' },
];

/** A multipart/form-data body; `file.body` may be left unterminated with `open: true`. */
export function form(
  boundary: string,
  fields: Record<string, string>,
  file?: { name: string; body: Buffer | string; field?: string; type?: string },
  opts: { close?: boolean } = {},
): Buffer {
  const parts: Buffer[] = [];
  for (const [k, v] of Object.entries(fields))
    parts.push(Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${k}"\r\n\r\n${v}\r\n`));
  if (file) {
    parts.push(
      Buffer.from(
        `--${boundary}\r\nContent-Disposition: form-data; name="${file.field ?? 'image'}"; filename="${file.name}"\r\nContent-Type: ${file.type ?? 'image/png'}\r\n\r\n`,
      ),
      Buffer.isBuffer(file.body) ? file.body : Buffer.from(file.body),
      Buffer.from('\r\n'),
    );
  }
  if (opts.close !== false) parts.push(Buffer.from(`--${boundary}--\r\n`));
  return Buffer.concat(parts);
}

export const PNG = Buffer.from(
  '89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d49444154789c63304e9bf91f00043402325b2d0ae00000000049454e44ae426082',
  'hex',
);

export const mp = (boundary = 'HostileBoundary42') => ({
  'content-type': `multipart/form-data; boundary=${boundary}`,
});

/** A valid prompt (EmptyImage → ImageInvert → SaveImage) with a fresh color. */
let color = 0x300000;
export const goodPrompt = () => modelFreePrompt({ color: color++ });

/** EmptyImage → n × ImageInvert → SaveImage: a valid chain `n + 2` nodes long. */
export function chainPrompt(
  n: number,
): Record<string, { class_type: string; inputs: Record<string, unknown> }> {
  const p: Record<string, { class_type: string; inputs: Record<string, unknown> }> = {
    '0': { class_type: 'EmptyImage', inputs: { width: 8, height: 8, batch_size: 1, color: 0 } },
  };
  for (let i = 1; i <= n; i++)
    p[String(i)] = { class_type: 'ImageInvert', inputs: { image: [String(i - 1), 0] } };
  p.save = { class_type: 'SaveImage', inputs: { images: [String(n), 0], filename_prefix: 'chain' } };
  return p;
}

/** JSON text nested `depth` levels deep (arrays), as a string (JSON.stringify would overflow first). */
export const deepJson = (depth: number, open = '[', close = ']') => open.repeat(depth) + close.repeat(depth);
export const deepObject = (depth: number) => '{"a":'.repeat(depth) + '1' + '}'.repeat(depth);

/** A string of `bytes` bytes (ASCII). */
export const big = (bytes: number) => 'x'.repeat(bytes);
