/**
 * Reads ComfyUI's template library (the `comfyui-workflow-templates` package, which ComfyUI's
 * server.py serves with `web.static('/templates', <package>/templates)`) over HTTP, to offer it to
 * the control plane exactly like the frontend (./frontend-mirror.ts, route `/templates`).
 *
 * A static route has no listing, so the files are found the way the frontend finds them: the
 * categories in `templates/index.json`, then per template `<name>.json` and its thumbnails
 * `<name>-1.<mediaSubtype>` (and `-2` for the compare/dissolve variants), the localized indexes
 * `index.<locale>.json` the frontend asks for, `fuse_options.json` and `index_logo.json` with the
 * logos it names. Missing files (404) are left out. No `index.json` (the package is not installed)
 * means there is nothing to mirror.
 */
import { createHash } from 'node:crypto';
import type { FrontendFile } from '../protocol.js';
import { FRONTEND_LIMITS } from '../protocol.js';
import type { FrontendSnapshot, MirrorContext, MirrorSource } from './frontend-mirror.js';
import { encodePath, getStream, HttpError } from './http-stream.js';

/** The locales the frontend 1.45 asks for (`index.<locale>.json`; English is `index.json`). */
export const TEMPLATE_LOCALES = [
  'zh',
  'zh-TW',
  'ru',
  'ja',
  'ko',
  'fr',
  'es',
  'ar',
  'tr',
  'pt-BR',
  'fa',
] as const;
const READ_CONCURRENCY = 6;
const REQUEST_TIMEOUT_MS = 30_000;

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** A relative path the control plane accepts (no dot segments, no backslashes), or null. */
function safeRel(p: string): string | null {
  if (p.length === 0 || p.length > 1024 || p.includes('\\')) return null;
  // eslint-disable-next-line no-control-regex -- control characters are exactly what is refused
  if (/[\u0000-\u001f\u007f]/.test(p)) return null;
  const segs = p.split('/');
  return segs.every((s) => s !== '' && !s.startsWith('.') && s.length <= 255) ? p : null;
}

/** Every file the library's index names (besides the indexes themselves). */
export function filesNamedBy(index: unknown, logoIndex: unknown): string[] {
  const out = new Set<string>();
  if (Array.isArray(index)) {
    for (const cat of index) {
      if (!isObject(cat) || !Array.isArray(cat.templates)) continue;
      for (const t of cat.templates) {
        if (!isObject(t) || typeof t.name !== 'string') continue;
        const sub =
          typeof t.mediaSubtype === 'string' && /^[a-z0-9]{1,8}$/i.test(t.mediaSubtype)
            ? t.mediaSubtype
            : 'webp';
        out.add(`${t.name}.json`);
        out.add(`${t.name}-1.${sub}`);
        if (typeof t.thumbnailVariant === 'string') out.add(`${t.name}-2.${sub}`);
      }
    }
  }
  if (isObject(logoIndex)) {
    for (const v of Object.values(logoIndex)) if (typeof v === 'string') out.add(v);
  }
  return [...out].map(safeRel).filter((p): p is string => p !== null);
}

function root(ctx: MirrorContext): string {
  return ctx.comfyuiUrl.replace(/\/+$/, '') + '/templates/';
}

function withTimeout(signal: AbortSignal | undefined): AbortSignal {
  const t = AbortSignal.timeout(REQUEST_TIMEOUT_MS);
  return signal ? AbortSignal.any([signal, t]) : t;
}

/** One file's size and sha256 (and its bytes when `keep`), or null on 404. */
async function hashOne(
  ctx: MirrorContext,
  rel: string,
  keep = false,
): Promise<{ size: number; sha256: string; body?: Buffer } | null> {
  let res;
  try {
    res = await getStream(root(ctx) + encodePath(rel), {}, withTimeout(ctx.signal));
  } catch (err) {
    if (err instanceof HttpError && (err.status === 404 || err.status === 403)) return null;
    throw err;
  }
  const hash = createHash('sha256');
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of res) {
    const b = c as Buffer;
    size += b.length;
    if (size > FRONTEND_LIMITS.maxFileBytes) {
      res.destroy();
      throw new Error(`/templates/${rel} is larger than ${FRONTEND_LIMITS.maxFileBytes} bytes`);
    }
    hash.update(b);
    if (keep) chunks.push(b);
  }
  return { size, sha256: hash.digest('hex'), ...(keep ? { body: Buffer.concat(chunks) } : {}) };
}

async function readJson(ctx: MirrorContext, rel: string) {
  const got = await hashOne(ctx, rel, true);
  if (!got) return null;
  let json: unknown = null;
  try {
    json = JSON.parse(got.body!.toString('utf8'));
  } catch {
    // kept as a file all the same; its contents are the package's business
  }
  return { ...got, json };
}

/** The installed package's version, as ComfyUI reports it (`installed_templates_version`). */
async function installedVersion(ctx: MirrorContext): Promise<string | null> {
  try {
    const res = await getStream(
      ctx.comfyuiUrl.replace(/\/+$/, '') + '/system_stats',
      {},
      withTimeout(ctx.signal),
    );
    const chunks: Buffer[] = [];
    for await (const c of res) chunks.push(c as Buffer);
    const stats = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { system?: Record<string, unknown> };
    const v = stats.system?.installed_templates_version;
    return typeof v === 'string' ? v.slice(0, 64) : null;
  } catch {
    return null;
  }
}

/** The library as ComfyUI serves it now, or null when it serves none (no `templates/index.json`). */
export async function readTemplateLibrary(ctx: MirrorContext): Promise<FrontendSnapshot | null> {
  const index = await readJson(ctx, 'index.json');
  if (!index) return null;
  const version = await installedVersion(ctx);
  const files: FrontendFile[] = [{ path: 'index.json', size: index.size, sha256: index.sha256 }];
  const logo = await readJson(ctx, 'index_logo.json');
  if (logo) files.push({ path: 'index_logo.json', size: logo.size, sha256: logo.sha256 });
  const names = [
    ...TEMPLATE_LOCALES.map((l) => `index.${l}.json`),
    'fuse_options.json',
    ...filesNamedBy(index.json, logo?.json ?? null),
  ];
  let total = files.reduce((n, f) => n + f.size, 0);
  let next = 0;
  let failure: unknown = null;
  const worker = async () => {
    while (next < names.length && failure === null) {
      const rel = names[next++]!;
      try {
        const got = await hashOne(ctx, rel);
        if (!got) continue;
        total += got.size;
        if (files.length + 1 > FRONTEND_LIMITS.maxFiles || total > FRONTEND_LIMITS.maxTotalBytes) {
          throw new Error(
            `the template library holds more than ${FRONTEND_LIMITS.maxFiles} files or ${FRONTEND_LIMITS.maxTotalBytes} bytes`,
          );
        }
        files.push({ path: rel, size: got.size, sha256: got.sha256 });
      } catch (err) {
        failure ??= err;
      }
    }
  };
  await Promise.all(Array.from({ length: READ_CONCURRENCY }, worker));
  if (failure !== null) throw failure as Error;
  files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const blobs: FrontendSnapshot['blobs'] = new Map();
  for (const f of files) blobs.set(f.sha256, { kind: 'http', path: `templates/${f.path}`, size: f.size });
  return {
    source: 'http',
    files,
    blobs,
    frontendVersion: version,
    totalBytes: total,
    fingerprint: fingerprintOf(index.sha256, version),
  };
}

function fingerprintOf(indexSha256: string, version: string | null): string {
  return createHash('sha256')
    .update(`${indexSha256}\n${version ?? ''}`)
    .digest('hex');
}

/**
 * The cheap check whether the library changed: the sha256 of `index.json` and the package version
 * (a new package version changes both). Null when ComfyUI serves no library.
 */
export async function templateLibraryFingerprint(ctx: MirrorContext): Promise<string | null> {
  const index = await hashOne(ctx, 'index.json');
  if (!index) return null;
  return fingerprintOf(index.sha256, await installedVersion(ctx));
}

export const TEMPLATE_LIBRARY_SOURCE: MirrorSource = {
  read: readTemplateLibrary,
  fingerprint: templateLibraryFingerprint,
  route: '/templates',
  what: "ComfyUI's template library",
};
