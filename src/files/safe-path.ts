import { AppError } from '../errors.js';
import { USER_NAME_RE } from '../auth/user-names.js';
import type { FileArea } from './file-store.js';

/**
 * Normalises a user-supplied relative path (ComfyUI's `subfolder` + `filename`) and refuses
 * anything that could escape: `..` segments, absolute paths, backslashes, NUL and other control
 * characters, drive letters, and over-long names. Returns segments joined with `/` ('' for root).
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
      if (seg.length > 255)
        throw new AppError('INVALID_PATH', 'A path segment is longer than 255 characters.');
      segments.push(seg);
    }
  }
  const joined = segments.join('/');
  if (joined.length > 1024) throw new AppError('INVALID_PATH', 'The path is longer than 1024 characters.');
  return joined;
}

/** The one way to build a file key: `<user>/<area>/<safe relative path>`. */
export function userFileKey(user: string, area: FileArea, ...parts: string[]): string {
  if (!USER_NAME_RE.test(user)) throw new AppError('INVALID_PATH', 'Invalid user name in a file path.');
  const rel = safeRelativePath(...parts);
  return rel ? `${user}/${area}/${rel}` : `${user}/${area}`;
}
