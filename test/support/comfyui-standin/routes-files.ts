/**
 * `/view`, `/upload/image` and `/upload/mask`: real files in the stand-in's input/output/temp
 * directories, with ComfyUI's path checks (400 for bad names, 403 for subfolder escapes, 404 for
 * missing files) and its upload naming (same bytes → same name, else `name (1).png`).
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { basename, extname, isAbsolute, join, posix, relative, resolve } from 'node:path';
import { reply, type Reply, type RequestCtx, type Router } from './http-util.js';
import { decodePng, encodeRgbaPng } from './image.js';
import type { DataDirs } from './types.js';

const MIME_TYPES: Record<string, string> = {
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.webp': 'image/webp',
  '.gif': 'image/gif',
  '.bmp': 'image/bmp',
  '.json': 'application/json',
  '.txt': 'text/plain',
  '.mp4': 'video/mp4',
  '.webm': 'video/webm',
  '.wav': 'audio/x-wav',
  '.flac': 'audio/flac',
  '.mp3': 'audio/mpeg',
};
/** Types ComfyUI forces to download instead of display. */
const FORCED_DOWNLOAD = new Set(['text/html', 'application/xhtml+xml', 'text/javascript', 'text/css']);

/** os.path.join: an absolute component replaces what came before. */
function pyJoin(base: string, part: string): string {
  return isAbsolute(part) ? part : join(base, part);
}

function isInside(base: string, target: string): boolean {
  const rel = relative(base, resolve(target));
  return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
}

function dirByType(dirs: DataDirs, type: string): string | null {
  return type === 'output' || type === 'input' || type === 'temp' ? dirs[type] : null;
}

/** folder_paths.annotated_filepath: `name [output]` picks the directory. */
function annotated(name: string, dirs: DataDirs): [string, string | null] {
  for (const type of ['output', 'input', 'temp'] as const) {
    if (name.endsWith(`[${type}]`)) return [name.slice(0, -(type.length + 3)), dirs[type]];
  }
  return [name, null];
}

export function addFileRoutes(router: Router, dirs: DataDirs): void {
  router.get('/view', (ctx) => view(ctx, dirs));
  router.post('/upload/image', (ctx) => upload(ctx, dirs, null));
  router.post('/upload/mask', (ctx) => upload(ctx, dirs, saveMask));
}

function view(ctx: RequestCtx, dirs: DataDirs): Reply {
  const q = ctx.url.searchParams;
  const raw = q.get('filename');
  if (raw === null) return reply.empty(404);
  const [name, annotatedDir] = annotated(raw, dirs);
  if (!name) return reply.empty(400);
  if (name.startsWith('/') || name.includes('..')) return reply.empty(400);
  let dir = annotatedDir ?? dirByType(dirs, q.get('type') ?? 'output');
  if (dir === null) return reply.empty(400);
  const subfolder = q.get('subfolder');
  if (subfolder !== null) {
    const full = pyJoin(dir, subfolder);
    if (!isInside(dir, full)) return reply.empty(403);
    dir = full;
  }
  const filename = basename(name);
  const file = join(dir, filename);
  if (!statSync(file, { throwIfNoEntry: false })?.isFile()) return reply.empty(404);
  const disposition = { 'Content-Disposition': `filename="${filename}"` };
  const channel = q.get('channel') ?? 'rgba';
  // `preview=webp|jpeg` would re-encode; the stand-in has no JPEG/WebP encoder and serves RGB PNG.
  if (q.has('preview') || channel === 'rgb')
    return { ...channelPng(file, 'rgb'), headers: { ...disposition, 'Content-Type': 'image/png' } };
  if (channel === 'a')
    return { ...channelPng(file, 'a'), headers: { ...disposition, 'Content-Type': 'image/png' } };
  return fileResponse(ctx, file, filename);
}

/** Re-encodes a PNG keeping only RGB, or only alpha (`channel=a`, RGB zeroed), as ComfyUI does. */
function channelPng(file: string, channel: 'rgb' | 'a'): Reply {
  const png = decodePng(readFileSync(file));
  const out = Buffer.from(png.rgba);
  for (let i = 0; i < out.length; i += 4) {
    if (channel === 'rgb') out[i + 3] = 255;
    else out.fill(0, i, i + 3);
  }
  return { status: 200, body: encodeRgbaPng(out, png.width, png.height) };
}

/** aiohttp's FileResponse: ETag/Last-Modified, 304 on a matching If-None-Match. */
function fileResponse(ctx: RequestCtx, file: string, filename: string): Reply {
  const st = statSync(file, { bigint: true });
  const etag = `"${st.mtimeNs.toString(16)}-${st.size.toString(16)}"`;
  let type = MIME_TYPES[extname(filename).toLowerCase()] ?? 'application/octet-stream';
  if (FORCED_DOWNLOAD.has(type)) type = 'application/octet-stream';
  const headers = {
    'Content-Disposition': `filename="${filename}"`,
    'Content-Type': type,
    Etag: etag,
    'Last-Modified': new Date(Number(st.mtimeMs)).toUTCString(),
    'Accept-Ranges': 'bytes',
  };
  if (ctx.req.headers['if-none-match'] === etag) return { status: 304, headers };
  // Streamed, like aiohttp's FileResponse: a multi-GB video output never sits in memory.
  return { status: 200, headers, file: { path: file, size: Number(st.size) } };
}

type SaveFunction = (form: FormData, image: File, bytes: Buffer, target: string, dirs: DataDirs) => void;

async function readForm(ctx: RequestCtx): Promise<FormData | null> {
  const contentType = String(ctx.req.headers['content-type'] ?? '');
  if (!/^multipart\/form-data|^application\/x-www-form-urlencoded/i.test(contentType)) return null;
  return new Response(await ctx.body(), { headers: { 'content-type': contentType } }).formData();
}

/** image_upload(): validation, directory, collision naming, optional custom save (masks). */
async function upload(ctx: RequestCtx, dirs: DataDirs, save: SaveFunction | null): Promise<Reply> {
  const form = await readForm(ctx);
  const image = form?.get('image') ?? null;
  if (!form || image === null) return reply.empty(400);
  if (typeof image === 'string') throw new Error("'str' object has no attribute 'file'");
  const typeField = form.get('type');
  const type = typeof typeField === 'string' ? typeField : 'input';
  const uploadDir = dirByType(dirs, type);
  if (uploadDir === null) throw new Error("local variable 'type_dir' referenced before assignment");
  let filename = image.name;
  if (!filename) return reply.empty(400);

  const subfolderField = form.get('subfolder');
  const subfolder = typeof subfolderField === 'string' ? subfolderField : '';
  const folder = pyJoin(uploadDir, posix.normalize(subfolder || '.'));
  if (!isInside(uploadDir, join(folder, filename))) return reply.empty(400);
  mkdirSync(folder, { recursive: true });

  const bytes = Buffer.from(await image.arrayBuffer());
  const overwrite = form.get('overwrite');
  let duplicate = false;
  if (overwrite !== 'true' && overwrite !== '1') {
    const ext = extname(filename);
    const stem = filename.slice(0, filename.length - ext.length);
    for (let i = 1; existsSync(join(folder, filename)); i++) {
      if (sameContent(join(folder, filename), bytes)) {
        duplicate = true; // identical bytes under the same name: keep the name, write nothing
        break;
      }
      filename = `${stem} (${i})${ext}`;
    }
  }
  if (!duplicate) {
    if (save) save(form, image, bytes, join(folder, filename), dirs);
    else writeFileSync(join(folder, filename), bytes);
  }
  return reply.json({ name: filename, subfolder, type });
}

function sameContent(path: string, bytes: Buffer): boolean {
  const hash = (b: Buffer) => createHash('sha256').update(b).digest('hex');
  return hash(readFileSync(path)) === hash(bytes);
}

/** /upload/mask: the referenced image with the uploaded mask's alpha channel. */
function saveMask(form: FormData, _image: File, bytes: Buffer, target: string, dirs: DataDirs): void {
  const ref = JSON.parse(String(form.get('original_ref'))) as {
    filename?: string;
    subfolder?: string;
    type?: string;
  };
  const [name, annotatedDir] = annotated(String(ref.filename ?? ''), dirs);
  if (!name || name.startsWith('/') || name.includes('..')) return;
  let dir = annotatedDir ?? dirByType(dirs, ref.type ?? 'output');
  if (dir === null) return;
  if (ref.subfolder) {
    const full = join(dir, ref.subfolder);
    if (!isInside(dir, full)) return;
    dir = full;
  }
  const originalPath = join(dir, name);
  if (!existsSync(originalPath)) return;
  const original = decodePng(readFileSync(originalPath));
  const mask = decodePng(bytes);
  if (mask.width !== original.width || mask.height !== original.height)
    throw new Error('images do not match');
  const out = Buffer.from(original.rgba);
  for (let i = 3; i < out.length; i += 4) out[i] = mask.rgba[i]!;
  writeFileSync(target, encodeRgbaPng(out, original.width, original.height));
}
