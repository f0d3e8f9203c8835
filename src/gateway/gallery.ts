import type { FastifyInstance } from 'fastify';
import { AppError } from '../errors.js';
import type { FileStat, FileStore } from '../files/file-store.js';
import { safeRelativePath, userFileKey } from '../files/safe-path.js';
import { sendStoredFile } from '../http/serve-file.js';
import type { GatewayDeps } from './deps.js';
import { q, userOf } from './http-util.js';
import { contentTypeOf, dispositionFilename, mediaKind } from './mime.js';
import { zipStream } from './zip.js';

const MAX_SHOWN = 1000;

export interface OutputFile {
  /** Path under the user's output folder. */
  path: string;
  subfolder: string;
  filename: string;
  size: number;
  mtimeMs: number;
}

/** Every file in the user's output space, newest first. */
export async function listOutputs(files: FileStore, user: string): Promise<OutputFile[]> {
  const prefix = `${userFileKey(user, 'output')}/`;
  const all: FileStat[] = await files.list(prefix);
  const out: OutputFile[] = [];
  for (const f of all) {
    if (!f.key.startsWith(prefix)) continue;
    const path = f.key.slice(prefix.length);
    if (path.split('/').some((s) => s.startsWith('.'))) continue;
    const i = path.lastIndexOf('/');
    out.push({
      path,
      subfolder: i < 0 ? '' : path.slice(0, i),
      filename: i < 0 ? path : path.slice(i + 1),
      size: f.size,
      mtimeMs: f.mtimeMs,
    });
  }
  return out.sort((a, b) => b.mtimeMs - a.mtimeMs || (a.path < b.path ? -1 : 1));
}

const esc = (s: string) =>
  s
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');

function humanSize(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MB`;
  return `${(n / 1024 ** 3).toFixed(2)} GB`;
}

export function renderGallery(user: string, outputs: OutputFile[]): string {
  const base = `/${encodeURIComponent(user)}`;
  const shown = outputs.slice(0, MAX_SHOWN);
  const total = outputs.reduce((n, o) => n + o.size, 0);
  const cards = shown
    .map((o) => {
      const qs = new URLSearchParams({
        filename: o.filename,
        subfolder: o.subfolder,
        type: 'output',
      }).toString();
      const view = `${base}/view?${qs}`;
      const dl = `${base}/gallery/download?${new URLSearchParams({ path: o.path }).toString()}`;
      const kind = mediaKind(o.filename);
      const media =
        kind === 'image'
          ? `<a href="${esc(view)}"><img src="${esc(view)}" alt="${esc(o.filename)}" loading="lazy"></a>`
          : kind === 'video'
            ? `<video controls preload="metadata" src="${esc(view)}"></video>`
            : kind === 'audio'
              ? `<audio controls preload="none" src="${esc(view)}"></audio>`
              : `<div class="file">${esc(o.filename)}</div>`;
      const when = new Date(o.mtimeMs).toISOString().replace('T', ' ').slice(0, 19);
      return `<figure>${media}<figcaption><span title="${esc(o.path)}">${esc(o.filename)}</span><br><small>${esc(when)} UTC · ${esc(humanSize(o.size))}</small> · <a href="${esc(dl)}" download>download</a></figcaption></figure>`;
    })
    .join('\n');
  const more =
    outputs.length > shown.length
      ? `<p>Showing the newest ${shown.length} of ${outputs.length} files; the zip has them all.</p>`
      : '';
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>My outputs · ${esc(user)}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#181818;color:#ddd}
header{padding:12px 20px;background:#222;display:flex;gap:16px;align-items:center;flex-wrap:wrap}
header h1{font-size:18px;margin:0}
a{color:#8ab4f8}
main{display:grid;grid-template-columns:repeat(auto-fill,minmax(220px,1fr));gap:14px;padding:20px}
figure{margin:0;background:#232323;border-radius:8px;overflow:hidden}
figure img,figure video{display:block;width:100%;height:200px;object-fit:contain;background:#111}
figure audio{width:100%;margin:70px 0}
.file{height:200px;display:flex;align-items:center;justify-content:center;color:#aaa;padding:8px;word-break:break-all}
figcaption{padding:8px;font-size:12px;word-break:break-all}
.empty{padding:40px 20px;color:#aaa}
</style></head>
<body>
<header><h1>My outputs</h1><span>${outputs.length} file${outputs.length === 1 ? '' : 's'} · ${esc(humanSize(total))}</span>
${outputs.length ? `<a href="${base}/gallery/download.zip" download>Download all (zip)</a>` : ''}
<a href="${base}/">Back to ComfyUI</a></header>
${outputs.length ? `${more}<main>\n${cards}\n</main>` : '<p class="empty">Nothing here yet. Queue a prompt in ComfyUI; everything your workflows save appears here, newest first.</p>'}
</body></html>`;
}

/** `/<user>/gallery`: the participant's outputs, one file, or all of them as a zip. */
export function galleryRoutes(app: FastifyInstance, deps: GatewayDeps): void {
  const { files } = deps;

  app.get('/gallery', async (request, reply) => {
    const user = userOf(request);
    const html = renderGallery(user, await listOutputs(files, user));
    return reply
      .type('text/html; charset=utf-8')
      .header('cache-control', 'no-store')
      .header(
        'content-security-policy',
        "default-src 'none'; img-src 'self'; media-src 'self'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'",
      )
      .send(html);
  });

  app.get('/gallery/download', async (request, reply) => {
    const user = userOf(request);
    const raw = q(request, 'path');
    if (!raw) throw new AppError('BAD_REQUEST', 'Give ?path=<file under your outputs>.');
    const rel = safeRelativePath(raw);
    const key = userFileKey(user, 'output', rel);
    const s = await files.stat(key);
    if (!s) throw new AppError('FILE_NOT_FOUND');
    const name = rel.split('/').pop()!;
    reply.header('x-content-type-options', 'nosniff');
    return sendStoredFile(request, reply, files, {
      key,
      stat: s,
      contentType: contentTypeOf(name) === 'text/html' ? 'application/octet-stream' : contentTypeOf(name),
      contentDisposition: `attachment; ${dispositionFilename(name)}`,
    });
  });

  app.get('/gallery/download.zip', async (request, reply) => {
    const user = userOf(request);
    const outputs = await listOutputs(files, user);
    const prefix = userFileKey(user, 'output');
    const entries = outputs.map((o) => ({
      name: o.path,
      mtime: new Date(o.mtimeMs),
      open: () => files.read(`${prefix}/${o.path}`),
    }));
    // A streamed archive built on the fly has no stable bytes to address: no ranges (200 only).
    const stream = zipStream(entries);
    stream.on('error', (err) => request.log.warn({ err, user }, 'zip download aborted'));
    return reply
      .header('content-type', 'application/zip')
      .header('accept-ranges', 'none')
      .header('content-disposition', `attachment; ${dispositionFilename(`${user}-outputs.zip`)}`)
      .header('cache-control', 'no-store')
      .send(stream);
  });
}
