import { AppError } from '../errors.js';
import type { FileArea, FileStore } from './file-store.js';
import { safeRelativePath, userFileKey } from './safe-path.js';

export const NAME_CLASH_MESSAGE =
  'A file and a folder cannot have the same name: choose another name, or move the one in the way.';

/**
 * Refuses to create `rel` in a user's area when a file is where one of its folders would be
 * (`a` is a file, writing `a/b`) or a folder is where the file would be (`a/` holds files,
 * writing `a`). A folder on disk cannot also be a file; object storage would happily keep both
 * `a` and `a/b`, and then listings and later local restores would disagree, so both backends are
 * held to the file-system rule here (a few HEAD requests on S3). The local store maps the same
 * clash to CONFLICT, too, should one slip in between this check and the write.
 */
export async function assertNoNameClash(
  files: FileStore,
  user: string,
  area: FileArea,
  rel: string,
): Promise<void> {
  const segments = safeRelativePath(rel).split('/').filter(Boolean);
  for (let i = 1; i < segments.length; i++) {
    if (await files.stat(userFileKey(user, area, segments.slice(0, i).join('/'))))
      throw new AppError('CONFLICT', NAME_CLASH_MESSAGE, {
        details: { path: segments.slice(0, i).join('/') },
      });
  }
  if (segments.length > 0 && (await files.list(`${userFileKey(user, area, ...segments)}/`)).length > 0)
    throw new AppError('CONFLICT', NAME_CLASH_MESSAGE, { details: { path: segments.join('/') } });
}

/** File-system errors that mean a file and a folder would share one name. */
export function isNameClash(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'ENOTDIR' || code === 'EISDIR' || code === 'EEXIST' || code === 'ENOTEMPTY';
}
