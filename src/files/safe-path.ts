import { AppError } from '../errors.js';
import { USER_NAME_RE } from '../auth/user-names.js';
import type { FileArea } from './file-store.js';

/** The longest file or folder name, in UTF-8 bytes (ext4, XFS, APFS, NTFS all allow 255). */
export const MAX_NAME_BYTES = 255;
/** The longest relative path, in UTF-8 bytes (S3 keys may have 1024 in all). */
export const MAX_PATH_BYTES = 1024;

/**
 * Normalises a user-supplied relative path (ComfyUI's `subfolder` + `filename`) and refuses
 * anything that could escape: `..` segments, absolute paths, backslashes, NUL and other control
 * characters, drive letters, and names or paths longer (in bytes) than file systems take. Returns segments joined with `/` ('' for root).
 */
export function safeRelativePath(...parts: string[]): string {
  const segments: string[] = [];
  for (const part of parts) {
    if (part === '') continue;
    // eslint-disable-next-line no-control-regex
    if (/[\u0000-\u001f\u007f\\]/.test(part) || part.startsWith('/') || /^[a-zA-Z]:/.test(part)) {
      throw new AppError('INVALID_PATH', 'The path contains characters or a form that is not allowed.');
    }
    for (const seg of part.split('/')) {
      if (seg === '' || seg === '.') continue;
      if (seg === '..') throw new AppError('INVALID_PATH', 'The path may not contain "..".');
      // File systems count bytes, not characters: 100 × 'é' is 200 bytes, one emoji is 4.
      if (Buffer.byteLength(seg, 'utf8') > MAX_NAME_BYTES)
        throw new AppError(
          'INVALID_PATH',
          `A file or folder name is longer than ${MAX_NAME_BYTES} bytes (UTF-8).`,
        );
      segments.push(seg);
    }
  }
  // `./C:/x` normalises to `C:/x`: refused like `C:/x` itself (found by fuzzing).
  if (segments.length > 0 && /^[a-zA-Z]:/.test(segments[0]!))
    throw new AppError('INVALID_PATH', 'The path contains characters or a form that is not allowed.');
  const joined = segments.join('/');
  if (Buffer.byteLength(joined, 'utf8') > MAX_PATH_BYTES)
    throw new AppError('INVALID_PATH', `The path is longer than ${MAX_PATH_BYTES} bytes (UTF-8).`);
  return joined;
}

/** The one way to build a file key: `<user>/<area>/<safe relative path>`. */
export function userFileKey(user: string, area: FileArea, ...parts: string[]): string {
  if (!USER_NAME_RE.test(user)) throw new AppError('INVALID_PATH', 'Invalid user name in a file path.');
  const rel = safeRelativePath(...parts);
  return rel ? `${user}/${area}/${rel}` : `${user}/${area}`;
}
