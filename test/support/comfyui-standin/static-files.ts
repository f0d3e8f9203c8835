/**
 * The web frontend and custom nodes' web folders, served like ComfyUI's server.py does:
 * `web.static('/extensions/<name>', dir)` for each custom node's WEB_DIRECTORY, then
 * `web.static('/', web_root)`, both after every API route; `GET /` answers `index.html`; and
 * `GET /extensions` lists `web_root/extensions/**.js` and every custom node's `**.js` as
 * `/extensions/<quoted name>/<relative path>`. Only active when the stand-in is given a
 * `frontendRoot` and/or `extensionDirs`; otherwise nothing here is used.
 */
import { readdirSync, realpathSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { extname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { reply, type Reply } from './http-util.js';

/** Python's mimetypes for what a frontend holds (aiohttp's FileResponse uses it). */
const MIME: Record<string, string> = {
  '.html': 'text/html',
  '.htm': 'text/html',
  '.js': 'text/javascript',
  '.mjs': 'text/javascript',
  '.css': 'text/css',
  '.json': 'application/json',
  '.map': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.gif': 'image/gif',
  '.webp': 'image/webp',
  '.ico': 'image/vnd.microsoft.icon',
  '.woff': 'font/woff',
  '.woff2': 'font/woff2',
  '.ttf': 'font/ttf',
  '.otf': 'font/otf',
  '.wasm': 'application/wasm',
  '.txt': 'text/plain',
  '.mp3': 'audio/mpeg',
  '.wav': 'audio/x-wav',
  '.mp4': 'video/mp4',
  '.webm': 'video/webm',
};

export interface StaticSiteOptions {
  frontendRoot?: string | undefined;
  extensionDirs?: Record<string, string> | undefined;
}

export class StaticSite {
  private readonly root: string | null;
  private readonly extensions: Map<string, string>;

  constructor(opts: StaticSiteOptions) {
    this.root = opts.frontendRoot ? realpathSync(resolve(opts.frontendRoot)) : null;
    this.extensions = new Map(
      Object.entries(opts.extensionDirs ?? {}).map(([name, dir]) => [name, realpathSync(resolve(dir))]),
    );
  }

  /** Something to serve at all (else the stand-in keeps its default answers). */
  get active(): boolean {
    return this.root !== null || this.extensions.size > 0;
  }

  get hasIndex(): boolean {
    return this.root !== null;
  }

  /** `GET /`: the frontend's index.html, never cached (as ComfyUI sends it). */
  async index(): Promise<Reply> {
    const r = this.root ? await serveFile(this.root, ['index.html']) : null;
    if (!r) return reply.notFound();
    return { ...r, headers: { ...r.headers, 'Cache-Control': 'no-cache' } };
  }

  /** `GET /extensions`. */
  extensionList(): string[] {
    const out: string[] = [];
    if (this.root) {
      const dir = join(this.root, 'extensions');
      for (const rel of jsFiles(dir)) out.push(`/extensions/${rel}`);
    }
    for (const [name, dir] of this.extensions) {
      for (const rel of jsFiles(dir)) out.push(`/extensions/${encodeURIComponent(name)}/${rel}`);
    }
    return out;
  }

  /** Any GET no API route took: a custom node's file, then the web root's; null when neither has it. */
  async serve(pathname: string): Promise<Reply | null> {
    const segments = decodeSegments(pathname);
    if (!segments) return null;
    if (segments[0] === 'extensions' && segments.length > 2) {
      const dir = this.extensions.get(segments[1]!);
      if (dir) return serveFile(dir, segments.slice(2));
    }
    if (!this.root || segments.length === 0) return null;
    return serveFile(this.root, segments);
  }
}

/** `/a/b%20c.js` → `['a', 'b c.js']`; null for `..`, encoded slashes and the like. */
function decodeSegments(pathname: string): string[] | null {
  const out: string[] = [];
  for (const raw of pathname.split('/')) {
    if (raw === '') continue;
    let seg: string;
    try {
      seg = decodeURIComponent(raw);
    } catch {
      return null;
    }
    if (seg === '.' || seg === '..' || /[/\\\0]/.test(seg)) return null;
    out.push(seg);
  }
  return out;
}

/** A file under `root`, not following links out of it (aiohttp's `follow_symlinks=False`). */
async function serveFile(root: string, segments: string[]): Promise<Reply | null> {
  const full = join(root, ...segments);
  let real: string;
  try {
    real = realpathSync(full);
  } catch {
    return null;
  }
  const rel = relative(root, real);
  if (rel === '..' || rel.startsWith(`..${sep}`) || isAbsolute(rel)) return null;
  const st = statSync(real, { throwIfNoEntry: false });
  if (!st) return null;
  if (st.isDirectory()) return reply.text('403: Forbidden', 403);
  if (!st.isFile()) return null;
  const body = await readFile(real);
  const type = MIME[extname(real).toLowerCase()] ?? 'application/octet-stream';
  const charset = type.startsWith('text/') || type === 'application/json' ? '; charset=utf-8' : '';
  return { status: 200, headers: { 'Content-Type': type + charset }, body };
}

/** `**.js` under `dir`, as slash-separated relative paths, sorted. */
function jsFiles(dir: string, prefix = ''): string[] {
  const st = statSync(dir, { throwIfNoEntry: false });
  if (!st?.isDirectory()) return [];
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) =>
    a.name.localeCompare(b.name),
  )) {
    if (entry.name.startsWith('.')) continue; // Python's glob skips hidden names
    const rel = prefix ? `${prefix}/${entry.name}` : entry.name;
    if (entry.isDirectory()) out.push(...jsFiles(join(dir, entry.name), rel));
    else if (entry.isFile() && entry.name.endsWith('.js')) out.push(rel);
  }
  return out;
}
