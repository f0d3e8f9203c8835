import type { FastifyRequest } from 'fastify';
import type { AppError } from '../errors.js';

/**
 * Plain HTML pages for people: the error pages a browser gets instead of JSON, in the login
 * page's look. Self-contained (no script, no external resource).
 */
export const esc = (s: string): string => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

export const HTML_PAGE_CSP =
  "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'self'";

export function htmlPage(title: string, body: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${esc(title)} · comfy-multi</title>
<style>
  body{margin:0;min-height:100vh;display:grid;place-items:center;background:#15171c;color:#e8e8ea;font:16px/1.5 system-ui,sans-serif}
  main{background:#20232b;padding:2rem;border-radius:12px;width:min(28rem,90vw);box-shadow:0 8px 30px #0006}
  h1{font-size:1.3rem;margin:0 0 1rem}
  a{color:#8fb6ff}
  .code{color:#8b8f9c;font-size:.85rem}
</style></head>
<body><main>
<h1>${esc(title)}</h1>
${body}
</main></body></html>`;
}

const TITLES: Record<number, string> = {
  400: 'That request did not work',
  401: 'Please sign in',
  403: 'This page is not yours',
  404: 'Page not found',
  405: 'That request did not work',
  409: 'That did not work',
  413: 'That was too large',
  429: 'Slow down a little',
  500: 'Something went wrong',
  503: 'Not available right now',
};

/**
 * Whether the error should be a page: a browser navigating (GET or HEAD, asks for text/html, not a
 * fetch or a WebSocket) to a path outside every API (`/api/…`, `/<user>/api/…`, `/admin/api/…`,
 * `/worker/…`). Everything else keeps the JSON body from the error table.
 */
export function wantsHtmlPage(request: FastifyRequest): boolean {
  if (request.method !== 'GET' && request.method !== 'HEAD') return false;
  if (request.headers.upgrade) return false;
  if (!(request.headers.accept ?? '').includes('text/html')) return false;
  const mode = request.headers['sec-fetch-mode'];
  if (mode !== undefined && mode !== 'navigate') return false;
  const path = request.url.split('?')[0]!;
  return !/^\/(?:[^/]+\/)?api(?:\/|$)/.test(path) && !path.startsWith('/worker/');
}

/** The page for an error: its message from the error table, its code, a way home. */
export function errorPage(err: AppError, signedInAs: string | null): string {
  const title = TITLES[err.status] ?? (err.status >= 500 ? 'Something went wrong' : 'That did not work');
  const home = signedInAs
    ? `<p><a href="/">Go to your start page</a> (signed in as <b>${esc(signedInAs)}</b>) · <a href="/logout">Sign out</a></p>`
    : '<p><a href="/">Go to the start page</a></p>';
  return htmlPage(
    title,
    `<p>${esc(err.message)}</p>\n${home}\n<p class="code">Error code: ${esc(err.code)}</p>`,
  );
}
