/**
 * What a built ComfyUI frontend's files refer to, found without running them: the pure half of
 * the frontend crawl (src/worker/agent/frontend-crawl.ts). ComfyUI serves its frontend as static
 * files and cannot list folders, so the crawl starts at `index.html` and follows references:
 *
 * - HTML: `src`, `href`, `srcset`, `poster`, `data` attributes (any extension), plus the CSS and JS
 *   rules below over the whole text (inline `<style>` and `<script>`).
 * - CSS: `url(...)` and `@import "..."` (any extension).
 * - JS (and JSON, web manifests): string literals in quotes or backticks whose text looks like a
 *   file path ending in an extension from {@link ASSET_EXTENSIONS}. Template literals with `${…}`
 *   cannot be resolved and are skipped. This finds static and dynamic `import`s, Vite's
 *   `__vite__mapDeps([...])` lists and `new URL("x.svg", import.meta.url)` assets.
 *
 * Each reference is resolved like a browser would, with one twist: a bare `assets/x.js` may be
 * relative to the document (Vite's absolute-base preload lists) or to the referencing file (its
 * relative-base ones, `new URL(...)`), so both are tried; the one that does not exist answers 404.
 * Nothing outside the site root, no other origin, no ComfyUI API path ({@link BLOCKED_ROOTS}).
 */
import { FRONTEND_LIMITS, frontendPathSchema } from '../protocol.js';

/** Extensions a JS string literal must end with to count as a file reference. */
export const ASSET_EXTENSIONS: ReadonlySet<string> = new Set([
  'js',
  'mjs',
  'cjs',
  'css',
  'json',
  'html',
  'htm',
  'woff',
  'woff2',
  'ttf',
  'otf',
  'eot',
  'svg',
  'png',
  'jpg',
  'jpeg',
  'gif',
  'webp',
  'avif',
  'ico',
  'bmp',
  'cur',
  'wasm',
  'mp3',
  'wav',
  'ogg',
  'flac',
  'mp4',
  'webm',
  'glb',
  'gltf',
  'bin',
  'txt',
  'webmanifest',
]);

/**
 * First path segments that are ComfyUI routes, never frontend files: requests there could be slow,
 * large or user data, so the crawl never makes them.
 */
export const BLOCKED_ROOTS: ReadonlySet<string> = new Set([
  'api',
  'internal',
  'templates',
  'docs',
  'userdata',
  'v2',
  'view',
  'ws',
]);

/** How a file's text is searched for references, or null when it is not read at all. */
export type TextKind = 'html' | 'css' | 'js';

const KIND_BY_EXTENSION: Record<string, TextKind> = {
  html: 'html',
  htm: 'html',
  css: 'css',
  js: 'js',
  mjs: 'js',
  cjs: 'js',
  json: 'js',
  webmanifest: 'js',
};

/** The lowercase extension of a path's last segment (`assets/a.B.js` → `js`), or ''. */
export function extensionOf(path: string): string {
  const name = path.slice(path.lastIndexOf('/') + 1);
  const dot = name.lastIndexOf('.');
  return dot <= 0 ? '' : name.slice(dot + 1).toLowerCase();
}

/** By extension; for files without a known one, by the served content type. */
export function textKind(path: string, contentType?: string): TextKind | null {
  const byExt = KIND_BY_EXTENSION[extensionOf(path)];
  if (byExt) return byExt;
  if (extensionOf(path) !== '' || !contentType) return null;
  const ct = contentType.toLowerCase();
  if (ct.startsWith('text/html')) return 'html';
  if (ct.startsWith('text/css')) return 'css';
  if (/javascript|ecmascript|[/+]json/.test(ct)) return 'js';
  return null;
}

// A quote, then path-like characters (no whitespace, quotes, brackets, operators or `:` — so no
// other origins or data URLs), an optional ?query/#hash, and the same quote (looked ahead at, not
// consumed, so a closing quote can open the next match and one odd quote cannot hide the rest).
const JS_STRING = /(["'`])([^"'`\s\\<>(){}[\],;|^*!=:?#&$+]{1,512})((?:[?#][^"'`\s\\]{0,256})?)(?=\1)/g;
const HTML_ATTR = /\b(?:src|href|srcset|poster|data)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))/gi;
const CSS_URL = /url\(\s*(?:"([^"]*)"|'([^']*)'|([^)"'\s]*))\s*\)/gi;
const CSS_IMPORT = /@import\s+(?:"([^"]*)"|'([^']*)')/gi;
/** An extension made of letters and digits with at least one letter: `js`, `woff2`, not `3`. */
const HAS_EXTENSION = /\.(?=[a-z0-9]{0,9}[a-z])[a-z0-9]{1,10}$/i;

// A template literal with one interpolation between a file-name stem and an extension:
// `/assets/images/favicon_progress_16x16/frame_${n}.png`.
const JS_SERIES =
  /`([^`"'\s\\<>(){}[\],;|^*!=:?#&$+]{1,256})\$\{[^{}`]{1,200}\}((?:[._-][^`"'\s\\<>(){}[\],;|^*!=:?#&$+/]{0,64})?\.[A-Za-z0-9]{1,10})`/g;

/**
 * Numbered files a JS template literal builds (`frame_${i}.png`): its text before and after the
 * one interpolation. The crawl tries `frame_0.png`, `frame_1.png`, … until one is missing.
 * Prefixes ending in `/` (a whole name is interpolated, not a number) are left out.
 */
export function extractNumberedSeries(text: string): { prefix: string; suffix: string }[] {
  const out = new Map<string, { prefix: string; suffix: string }>();
  for (const m of text.matchAll(JS_SERIES)) {
    const prefix = m[1]!;
    const suffix = m[2]!;
    if (prefix.endsWith('/') || !ASSET_EXTENSIONS.has(extensionOf(`x${suffix}`))) continue;
    out.set(`${prefix}\0${suffix}`, { prefix, suffix });
  }
  return [...out.values()];
}

/** The raw references in a file's text (not yet resolved or filtered for safety). */
export function extractReferences(text: string, kind: TextKind): string[] {
  const out = new Set<string>();
  const any = (ref: string | undefined) => {
    const r = ref?.trim();
    if (r && !/\s/.test(r) && HAS_EXTENSION.test(stripQuery(r))) out.add(r);
  };
  if (kind === 'html') {
    for (const m of text.matchAll(HTML_ATTR)) {
      const value = m[1] ?? m[2] ?? m[3] ?? '';
      if (/srcset/i.test(m[0].slice(0, 8))) {
        for (const candidate of value.split(',')) any(candidate.trim().split(/\s+/)[0]);
      } else {
        any(value);
      }
    }
  }
  if (kind === 'html' || kind === 'css') {
    for (const m of text.matchAll(CSS_URL)) any(m[1] ?? m[2] ?? m[3]);
    for (const m of text.matchAll(CSS_IMPORT)) any(m[1] ?? m[2]);
  }
  if (kind === 'html' || kind === 'js') {
    for (const m of text.matchAll(JS_STRING)) {
      const path = m[2]!;
      if (ASSET_EXTENSIONS.has(extensionOf(path)) && !path.endsWith('/')) out.add(path + (m[3] ?? ''));
    }
  }
  return [...out];
}

function stripQuery(ref: string): string {
  const cut = ref.search(/[?#]/);
  return cut < 0 ? ref : ref.slice(0, cut);
}

/** `a/./b/../c` → `a/c`; null when `..` would climb above the root or a segment is unsafe. */
function normalise(segments: string[]): string | null {
  const out: string[] = [];
  for (const seg of segments) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') {
      if (out.length === 0) return null;
      out.pop();
      continue;
    }
    out.push(seg);
  }
  return out.length === 0 ? null : out.join('/');
}

function decodeSegments(ref: string): string[] | null {
  const parts = ref.split('/');
  const decoded: string[] = [];
  for (const p of parts) {
    let d: string;
    try {
      d = decodeURIComponent(p);
    } catch {
      return null;
    }
    // An encoded slash or backslash would make one segment two.
    if (d.includes('/') || d.includes('\\')) return null;
    decoded.push(d);
  }
  return decoded;
}

/** A site path the crawl may request: a valid frontend path, not a ComfyUI route, with an extension. */
export function isCrawlablePath(path: string): boolean {
  if (!frontendPathSchema.safeParse(path).success) return false;
  const slash = path.indexOf('/');
  const first = slash < 0 ? path : path.slice(0, slash);
  if (BLOCKED_ROOTS.has(first.toLowerCase())) return false;
  return HAS_EXTENSION.test(path);
}

/**
 * The site paths a reference in the file at site path `from` may name (0, 1 or 2 of them), each
 * {@link isCrawlablePath}. `?query` and `#hash` are dropped; other origins, `data:` and the like
 * give none.
 */
export function resolveReference(ref: string, from: string): string[] {
  const r = stripQuery(ref.trim());
  if (r === '' || r.startsWith('//') || r.includes('\\') || /^[a-z][a-z0-9+.-]*:/i.test(r)) return [];
  const segs = decodeSegments(r);
  if (!segs) return [];
  const folder = from.includes('/') ? from.slice(0, from.lastIndexOf('/')).split('/') : [];
  const candidates: (string | null)[] = [];
  if (r.startsWith('/')) candidates.push(normalise(segs));
  else if (r === '.' || r === '..' || r.startsWith('./') || r.startsWith('../'))
    candidates.push(normalise([...folder, ...segs]));
  else candidates.push(normalise(segs), normalise([...folder, ...segs]));
  const out: string[] = [];
  for (const c of candidates) if (c !== null && !out.includes(c) && isCrawlablePath(c)) out.push(c);
  return out;
}

/**
 * The ComfyUI frontend's own version, when this built file carries it. The frontend's
 * `src/config.ts` is `{app_title: 'ComfyUI', app_version: __COMFYUI_FRONTEND_VERSION__}`, and Vite
 * replaces the constant with the package version at build time; minifiers keep the property names,
 * so `app_version:"1.45.0"` survives in one chunk. `frontendVersion = "…"` (the version stamped
 * into saved workflows) is the fallback.
 */
export function detectFrontendVersion(text: string): string | null {
  const m =
    /\bapp_version\s*:\s*["'`](\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.+-]{1,40})?)["'`]/.exec(text) ??
    /\bfrontendVersion\s*=\s*["'`](\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.+-]{1,40})?)["'`]/.exec(text);
  return m?.[1]?.slice(0, 64) ?? null;
}

export type FrontendLimits = { maxFiles: number; maxFileBytes: number; maxTotalBytes: number };

/** The protocol's limits, optionally tightened (never loosened). */
export function effectiveLimits(over: Partial<FrontendLimits> = {}): FrontendLimits {
  return {
    maxFiles: Math.min(over.maxFiles ?? FRONTEND_LIMITS.maxFiles, FRONTEND_LIMITS.maxFiles),
    maxFileBytes: Math.min(over.maxFileBytes ?? FRONTEND_LIMITS.maxFileBytes, FRONTEND_LIMITS.maxFileBytes),
    maxTotalBytes: Math.min(
      over.maxTotalBytes ?? FRONTEND_LIMITS.maxTotalBytes,
      FRONTEND_LIMITS.maxTotalBytes,
    ),
  };
}

/** A frontend that does not fit the protocol's limits (or the tighter ones asked for). */
export class FrontendLimitError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FrontendLimitError';
  }
}
