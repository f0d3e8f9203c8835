import { readFile } from 'node:fs/promises';
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { AppError } from '../errors.js';
import type { FileStat, FileStore } from '../files/file-store.js';
import { safeRelativePath, userFileKey } from '../files/safe-path.js';
import { parse } from '../http/parse.js';
import { sendStoredFile } from '../http/serve-file.js';
import type { VideoInfo, VideoPreviews } from '../media/video-previews.js';
import type { GatewayDeps } from './deps.js';
import { q, userOf } from './http-util.js';
import { contentTypeOf, dispositionFilename, mediaKind } from './mime.js';
import { galleryExtras, historyJobs, outputsJsonEntry, type GalleryNote } from './gallery-entries.js';
import { zipStream, type ZipEntry } from './zip.js';

const MAX_SHOWN = 1000;

/**
 * How long the gallery page waits for videos' durations it has not probed before. Probes that take
 * longer go on in the background (cached for the next load); the page shows those without one.
 */
const PROBE_BUDGET_MS = 2_000;

// `text`: the text entries of jobs' outputs (a node's ui `text`, a custom node's values), not files.
const KINDS = ['video', 'image', 'audio', 'text', 'other'] as const;
type Kind = (typeof KINDS)[number];
const KIND_LABEL: Record<Kind, string> = {
  video: 'Videos',
  image: 'Images',
  audio: 'Audio',
  text: 'Text',
  other: 'Other',
};

const galleryQuery = z.object({ kind: z.enum(KINDS).optional() }).loose();

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

/** 0:04, 1:02:03: a video's length as players show it. */
export function clockTime(sec: number): string {
  const t = Math.round(sec);
  const h = Math.floor(t / 3600);
  const m = Math.floor((t % 3600) / 60);
  const ss = String(t % 60).padStart(2, '0');
  return h ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

export interface GalleryView {
  /** Only files of this kind (the page's filter), or all. */
  kind?: Kind | undefined;
  /** Known durations of videos, by path. */
  videos?: ReadonlyMap<string, VideoInfo>;
  /** Whether `/gallery/poster` can make poster frames (ffmpeg). */
  posters?: boolean;
  /** Jobs' non-file output entries, shown as text cards among the files. */
  notes?: readonly GalleryNote[];
  /** Paths of files their node reported as `animated`. */
  animated?: ReadonlySet<string>;
}

export function renderGallery(user: string, all: OutputFile[], view: GalleryView = {}): string {
  const base = `/${encodeURIComponent(user)}`;
  const counts = new Map<Kind, number>();
  for (const o of all) counts.set(mediaKind(o.filename), (counts.get(mediaKind(o.filename)) ?? 0) + 1);
  const allNotes = view.notes ?? [];
  if (allNotes.length) counts.set('text', allNotes.length);
  const outputs = view.kind ? all.filter((o) => mediaKind(o.filename) === view.kind) : all;
  const notes = !view.kind || view.kind === 'text' ? allNotes : [];
  // Files and text cards together, newest first.
  const items: ({ file: OutputFile; at: number } | { note: GalleryNote; at: number })[] = [
    ...outputs.map((file) => ({ file, at: file.mtimeMs })),
    ...notes.map((note) => ({ note, at: note.at })),
  ].sort((a, b) => b.at - a.at);
  const shown = items.slice(0, MAX_SHOWN);
  const total = outputs.reduce((n, o) => n + o.size, 0);
  const cards = shown
    .map((item) => {
      if ('note' in item) {
        const when = new Date(item.at).toISOString().replace('T', ' ').slice(0, 19);
        // A participant's text, always escaped: it is shown, never interpreted.
        return `<figure class="text"><pre class="note">${esc(item.note.text)}</pre><figcaption><span>${esc(item.note.key)}</span><br><small>${esc(when)} UTC</small></figcaption></figure>`;
      }
      const o = item.file;
      const qs = new URLSearchParams({
        filename: o.filename,
        subfolder: o.subfolder,
        type: 'output',
      }).toString();
      const viewUrl = `${base}/view?${qs}`;
      const dl = `${base}/gallery/download?${new URLSearchParams({ path: o.path }).toString()}`;
      const kind = mediaKind(o.filename);
      const info = view.videos?.get(o.path);
      // With a poster nothing of the video is fetched until it is played (a page of 200 clips on
      // a workshop's Wi-Fi); without one the browser loads just enough to show its first frame.
      const poster = `${base}/gallery/poster?${new URLSearchParams({ path: o.path, v: `${o.size}-${Math.trunc(o.mtimeMs)}` }).toString()}`;
      const media =
        kind === 'image'
          ? `<a href="${esc(viewUrl)}"><img src="${esc(viewUrl)}" alt="${esc(o.filename)}" loading="lazy"></a>`
          : kind === 'video'
            ? view.posters
              ? `<video controls playsinline preload="none" poster="${esc(poster)}" src="${esc(viewUrl)}"></video>`
              : `<video controls playsinline preload="metadata" src="${esc(viewUrl)}"></video>`
            : kind === 'audio'
              ? `<audio controls preload="none" src="${esc(viewUrl)}"></audio>`
              : `<div class="file">${esc(o.filename)}</div>`;
      const duration =
        info?.durationSec != null
          ? ` · <span class="duration">${esc(clockTime(info.durationSec))}</span>`
          : '';
      const when = new Date(o.mtimeMs).toISOString().replace('T', ' ').slice(0, 19);
      const badge = view.animated?.has(o.path) ? ' <span class="badge">animated</span>' : '';
      return `<figure class="${kind}">${media}<figcaption><span title="${esc(o.path)}">${esc(o.filename)}</span>${badge}<br><small>${esc(when)} UTC · ${esc(humanSize(o.size))}${duration}</small> · <a href="${esc(dl)}" download>download</a></figcaption></figure>`;
    })
    .join('\n');
  const more =
    items.length > shown.length
      ? `<p>Showing the newest ${shown.length} of ${items.length} items; the zip has them all.</p>`
      : '';
  const filters =
    counts.size > 1
      ? `<nav>${[
          view.kind
            ? `<a href="${base}/gallery">All (${all.length + allNotes.length})</a>`
            : `<b>All (${all.length + allNotes.length})</b>`,
          ...KINDS.filter((k) => counts.has(k)).map((k) =>
            view.kind === k
              ? `<b>${KIND_LABEL[k]} (${counts.get(k)})</b>`
              : `<a href="${base}/gallery?kind=${k}">${KIND_LABEL[k]} (${counts.get(k)})</a>`,
          ),
        ].join(' · ')}</nav>`
      : '';
  const zip = `${base}/gallery/download.zip${view.kind ? `?kind=${view.kind}` : ''}`;
  const empty = view.kind
    ? `<p class="empty">No ${KIND_LABEL[view.kind].toLowerCase()} here. <a href="${base}/gallery">Show everything</a></p>`
    : '<p class="empty">Nothing here yet. Queue a prompt in ComfyUI; everything your workflows save appears here, newest first.</p>';
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
.file,.note{height:200px;display:flex;align-items:center;justify-content:center;color:#aaa;padding:8px;word-break:break-all}
.note{margin:0;overflow:auto;white-space:pre-wrap;font:12px/1.4 ui-monospace,monospace;color:#ddd;display:block}
.badge{background:#3a5;color:#fff;border-radius:4px;padding:0 4px;font-size:11px}
figcaption{padding:8px;font-size:12px;word-break:break-all}
.empty{padding:40px 20px;color:#aaa}
</style></head>
<body>
<header><h1>My outputs</h1><span>${outputs.length} file${outputs.length === 1 ? '' : 's'} · ${esc(humanSize(total))}${notes.length ? ` · ${notes.length} text${notes.length === 1 ? '' : 's'}` : ''}</span>
${filters}
${items.length ? `<a href="${zip}" download>Download ${view.kind ? 'these' : 'all'} (zip)</a>` : ''}
<a href="${base}/">Back to ComfyUI</a></header>
${items.length ? `${more}<main>\n${cards}\n</main>` : empty}
</body></html>`;
}

/** Durations of the videos among `outputs`, as many as are known or found within `budgetMs`. */
async function videoInfos(
  previews: VideoPreviews,
  prefix: string,
  outputs: OutputFile[],
  budgetMs: number,
): Promise<Map<string, VideoInfo>> {
  const found = new Map<string, VideoInfo>();
  if (!(await previews.durationsAvailable())) return found;
  const all = outputs
    .filter((o) => mediaKind(o.filename) === 'video')
    .map((o) =>
      previews
        .info({ key: `${prefix}/${o.path}`, size: o.size, mtimeMs: o.mtimeMs })
        .then((info) => {
          if (info) found.set(o.path, info);
        })
        .catch(() => {}),
    );
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    Promise.all(all),
    new Promise((r) => {
      timer = setTimeout(r, budgetMs);
    }),
  ]);
  clearTimeout(timer);
  return new Map(found);
}

/** `/<user>/gallery`: the participant's outputs, one file, or all of them as a zip. */
export function galleryRoutes(app: FastifyInstance, deps: GatewayDeps): void {
  const { files } = deps;

  app.get('/gallery', async (request, reply) => {
    const user = userOf(request);
    const { kind } = parse(galleryQuery, request.query);
    const all = await listOutputs(files, user);
    const shown = (kind ? all.filter((o) => mediaKind(o.filename) === kind) : all).slice(0, MAX_SHOWN);
    const videos = await videoInfos(deps.previews, userFileKey(user, 'output'), shown, PROBE_BUDGET_MS);
    const { notes, animated } = galleryExtras(await historyJobs(deps.store, user));
    const html = renderGallery(user, all, {
      kind,
      videos,
      posters: await deps.previews.postersAvailable(),
      notes,
      animated,
    });
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

  // A poster frame of one of the user's videos (made once, then cached). 404 when there is none
  // (not a video, no ffmpeg, undecodable): the player then shows what the browser loads itself.
  app.get('/gallery/poster', async (request, reply) => {
    const user = userOf(request);
    const raw = q(request, 'path');
    if (!raw) throw new AppError('BAD_REQUEST', 'Give ?path=<video under your outputs>.');
    const rel = safeRelativePath(raw);
    if (mediaKind(rel) !== 'video') throw new AppError('FILE_NOT_FOUND');
    const key = userFileKey(user, 'output', rel);
    const s = await files.stat(key);
    if (!s) throw new AppError('FILE_NOT_FOUND');
    const jpg = await deps.previews.poster(s);
    if (!jpg) throw new AppError('FILE_NOT_FOUND', 'No poster frame for this video.');
    // The page's URL names the file's size and time (`v=`): a replaced video gets a new URL.
    return reply
      .type('image/jpeg')
      .header('cache-control', 'private, max-age=86400')
      .header('x-content-type-options', 'nosniff')
      .send(await readFile(jpg));
  });

  app.get('/gallery/download.zip', async (request, reply) => {
    const user = userOf(request);
    const { kind } = parse(galleryQuery, request.query);
    const outputs = (await listOutputs(files, user)).filter((o) => !kind || mediaKind(o.filename) === kind);
    const prefix = userFileKey(user, 'output');
    const entries: ZipEntry[] = outputs.map((o) => ({
      name: o.path,
      mtime: new Date(o.mtimeMs),
      open: () => files.read(`${prefix}/${o.path}`),
    }));
    // Every job's outputs as /history shows them (text, animated, custom fields), beside the files.
    if (!kind || kind === 'text') {
      let name = 'outputs.json';
      while (outputs.some((o) => o.path === name)) name = `_${name}`;
      const json = outputsJsonEntry(name, await historyJobs(deps.store, user));
      if (json) entries.unshift(json);
    }
    // A streamed archive built on the fly has no stable bytes to address: no ranges (200 only).
    const stream = zipStream(entries);
    stream.on('error', (err) => request.log.warn({ err, user }, 'zip download aborted'));
    return reply
      .header('content-type', 'application/zip')
      .header('accept-ranges', 'none')
      .header(
        'content-disposition',
        `attachment; ${dispositionFilename(`${user}-${kind ? `${kind}-` : ''}outputs.zip`)}`,
      )
      .header('cache-control', 'no-store')
      .send(stream);
  });
}
