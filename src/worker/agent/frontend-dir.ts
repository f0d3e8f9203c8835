/**
 * Reads a ComfyUI web frontend from a local folder (`--frontend-dir`, e.g. the `static/` folder of
 * the `comfyui-frontend-package` Python package) as a list of files: site path, size, sha256.
 * Every file counts (a folder can be listed, so nothing needs to be referenced to be found), except
 * dot-files and dot-folders, names the protocol refuses, and symbolic links that lead outside the
 * folder. Files are hashed as they stream; only small JS files are read whole, to look for the
 * frontend's version.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir, readFile, realpath, stat } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, relative, sep } from 'node:path';
import { frontendPathSchema, type FrontendFile } from '../protocol.js';
import {
  detectFrontendVersion,
  effectiveLimits,
  extensionOf,
  FrontendLimitError,
  type FrontendLimits,
} from './frontend-refs.js';

/** A file of the folder: its site path, size and sha256, and where it is on disk. */
export interface DirFile extends FrontendFile {
  file: string;
}

export interface DirFrontend {
  /** The folder, resolved (symbolic links followed). */
  dir: string;
  /** Sorted by path. */
  files: DirFile[];
  indexSha256: string;
  frontendVersion: string | null;
  totalBytes: number;
  /** Site paths left out, with why (dot-file, link leaving the folder, unusable name). */
  skipped: { path: string; why: string }[];
}

export interface DirOptions {
  limits?: Partial<FrontendLimits>;
  signal?: AbortSignal;
  /** Files hashed at the same time. Default 8. */
  concurrency?: number;
}

/** JS files up to this size are read whole to look for the version marker. */
const VERSION_SCAN_MAX = 8 * 1024 * 1024;

/** Reads the frontend in `dir`. Rejects when it has no index.html or does not fit the limits. */
export async function readFrontendDir(dir: string, opts: DirOptions = {}): Promise<DirFrontend> {
  const limits = effectiveLimits(opts.limits);
  let root: string;
  try {
    root = await realpath(dir);
    if (!(await stat(root)).isDirectory()) throw new Error('not a folder');
  } catch (err) {
    throw new Error(`the frontend folder ${dir} cannot be read: ${(err as Error).message}`, { cause: err });
  }
  const found: { path: string; file: string; size: number }[] = [];
  const skipped: DirFrontend['skipped'] = [];
  let total = 0;
  /** `ancestors`: the real paths of the folders above, so a link back up is not walked forever. */
  const walk = async (abs: string, prefix: string, ancestors: ReadonlySet<string>): Promise<void> => {
    opts.signal?.throwIfAborted();
    const entries = await readdir(abs, { withFileTypes: true });
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const entry of entries) {
      const path = prefix ? `${prefix}/${entry.name}` : entry.name;
      const full = join(abs, entry.name);
      if (entry.name.startsWith('.')) {
        skipped.push({ path, why: 'dot-file' });
        continue;
      }
      let isFile = entry.isFile();
      let isDir = entry.isDirectory();
      let target = full;
      if (entry.isSymbolicLink()) {
        try {
          target = await realpath(full);
        } catch {
          skipped.push({ path, why: 'broken link' });
          continue;
        }
        const rel = relative(root, target);
        if (rel === '' || rel === '..' || rel.startsWith(`..${sep}`) || isAbsolute(rel)) {
          skipped.push({ path, why: 'link leaves the folder' });
          continue;
        }
        const s = await stat(target);
        isFile = s.isFile();
        isDir = s.isDirectory();
      }
      if (isDir) {
        const real = target === full ? await realpath(full) : target;
        if (ancestors.has(real)) continue; // a link loop
        await walk(full, path, new Set([...ancestors, real]));
        continue;
      }
      if (!isFile) continue;
      if (!frontendPathSchema.safeParse(path).success) {
        skipped.push({ path, why: 'name not allowed in a frontend path' });
        continue;
      }
      const size = (await stat(target)).size;
      if (size > limits.maxFileBytes) {
        throw new FrontendLimitError(`${path} is larger than ${limits.maxFileBytes} bytes`);
      }
      total += size;
      if (total > limits.maxTotalBytes) {
        throw new FrontendLimitError(`the frontend is larger than ${limits.maxTotalBytes} bytes`);
      }
      if (found.length >= limits.maxFiles) {
        throw new FrontendLimitError(`the frontend has more than ${limits.maxFiles} files`);
      }
      found.push({ path, file: target, size });
    }
  };
  await walk(root, '', new Set([root]));
  if (!found.some((f) => f.path === 'index.html')) {
    throw new Error(`the frontend folder ${dir} has no index.html`);
  }

  const files: DirFile[] = new Array<DirFile>(found.length);
  const versions = new Map<string, string>();
  let next = 0;
  const worker = async () => {
    while (next < found.length) {
      const i = next++;
      const f = found[i]!;
      opts.signal?.throwIfAborted();
      const scan =
        (extensionOf(f.path) === 'js' || extensionOf(f.path) === 'mjs') && f.size <= VERSION_SCAN_MAX;
      let hashed: { size: number; sha256: string };
      if (scan) {
        const buf = await readFile(f.file, { signal: opts.signal });
        const v = detectFrontendVersion(buf.toString('utf8'));
        if (v) versions.set(f.path, v);
        hashed = { size: buf.length, sha256: createHash('sha256').update(buf).digest('hex') };
      } else {
        hashed = await hashFile(f.file, opts.signal);
      }
      if (hashed.size > limits.maxFileBytes) {
        throw new FrontendLimitError(`${f.path} is larger than ${limits.maxFileBytes} bytes`);
      }
      files[i] = { path: f.path, size: hashed.size, sha256: hashed.sha256, file: f.file };
    }
  };
  const n = Math.max(1, Math.min(opts.concurrency ?? 8, found.length));
  await Promise.all(Array.from({ length: n }, worker));
  const totalBytes = files.reduce((s, f) => s + f.size, 0);
  if (totalBytes > limits.maxTotalBytes) {
    throw new FrontendLimitError(`the frontend is larger than ${limits.maxTotalBytes} bytes`);
  }
  const firstVersionPath = [...versions.keys()].sort()[0];
  return {
    dir: root,
    files,
    indexSha256: files.find((f) => f.path === 'index.html')!.sha256,
    frontendVersion:
      (await packageVersion(root)) ??
      (firstVersionPath === undefined ? null : versions.get(firstVersionPath)!),
    totalBytes,
    skipped,
  };
}

/** sha256 and size of a file, streamed. */
export function hashFile(file: string, signal?: AbortSignal): Promise<{ size: number; sha256: string }> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    let size = 0;
    const stream = createReadStream(file, signal ? { signal } : {});
    stream.on('data', (chunk) => {
      size += chunk.length;
      hash.update(chunk);
    });
    stream.on('error', reject);
    stream.on('end', () => resolve({ size, sha256: hash.digest('hex') }));
  });
}

/**
 * The pip package's version when `root` is `.../site-packages/comfyui_frontend_package/static`:
 * its `comfyui_frontend_package-<version>.dist-info` folder sits beside the package.
 */
async function packageVersion(root: string): Promise<string | null> {
  if (basename(root) !== 'static' || basename(dirname(root)) !== 'comfyui_frontend_package') return null;
  const sitePackages = dirname(dirname(root));
  try {
    for (const name of await readdir(sitePackages)) {
      const m = /^comfyui_frontend_package-(\d+\.\d+\.\d+[0-9A-Za-z.+-]{0,40})\.dist-info$/.exec(name);
      if (m) return m[1]!.slice(0, 64);
    }
  } catch {
    // not a site-packages folder we can read
  }
  return null;
}
