import { createHash, randomUUID } from 'node:crypto';
import { outputFolderChanged } from '../dispatch/output-names.js';
import { extname } from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { MultipartFile } from '@fastify/multipart';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { AppError } from '../errors.js';
import { toAppError } from '../http/error-handler.js';
import type { FileStore } from '../files/file-store.js';
import { assertNoNameClash } from '../files/name-clash.js';
import { safeRelativePath, userFileKey } from '../files/safe-path.js';
import { sendStoredFile } from '../http/serve-file.js';
import type { GatewayDeps } from './deps.js';
import { topLevelFiles } from './environment.js';
import { both, closeAfterReply, q, userOf } from './http-util.js';
import { contentTypeOf, dispositionFilename, isDangerousContentType } from './mime.js';

const ignore = () => {};

/**
 * Room for the rest of an upload form besides the file (boundaries, part headers, the `type`,
 * `subfolder`, `overwrite` and `original_ref` fields): a body declared larger than UPLOAD_LIMIT
 * plus this cannot hold an acceptable file, so it is refused before any of it is read.
 */
const FORM_OVERHEAD = 1024 * 1024;

/** 1.5 GB, 500 MB, 64 KB: the limit as a person reads it (binary units, as the config parses them). */
export function readableSize(n: number): string {
  const units: [number, string][] = [
    [1024 ** 3, 'GB'],
    [1024 ** 2, 'MB'],
    [1024, 'KB'],
  ];
  for (const [unit, name] of units)
    if (n >= unit) return `${Number((n / unit).toFixed(1)).toString()} ${name}`;
  return `${n} bytes`;
}

/** The 413 of an upload, with the limit in the message (what the participant can act on). */
export function uploadTooLarge(limit: number): AppError {
  return new AppError(
    'PAYLOAD_TOO_LARGE',
    `The file is larger than the upload limit of ${readableSize(limit)} (UPLOAD_LIMIT, ${limit} bytes). Trim or re-encode it, or ask the instructor to raise UPLOAD_LIMIT.`,
  );
}

const AREAS = ['input', 'output', 'temp'] as const;
type Area = (typeof AREAS)[number];
const isArea = (v: unknown): v is Area => typeof v === 'string' && (AREAS as readonly string[]).includes(v);

/** Splits ComfyUI's annotated names, `name.png [output]`. */
export function annotated(name: string): { name: string; area: Area | null } {
  const m = /^(.*) \[(input|output|temp)\]$/.exec(name);
  return m ? { name: m[1]!, area: m[2] as Area } : { name, area: null };
}

async function sha256Of(stream: Readable): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of stream) h.update(chunk as Buffer);
  return h.digest('hex');
}

interface Staged {
  key: string;
  sha256: string;
  size: number;
  filename: string;
}

/**
 * Reads a ComfyUI upload form (`image` file part plus `type`, `subfolder`, `overwrite`,
 * `original_ref` fields, in any order): the file is streamed to a staging key in the user's temp
 * area while it is hashed, so the final name (which depends on fields that may come after the
 * file) is decided only once the whole form is read. Nothing is kept in memory.
 */
async function readUploadForm(
  request: FastifyRequest,
  files: FileStore,
  user: string,
  limit: number,
): Promise<{ fields: Record<string, string>; staged: Staged | null }> {
  const fields: Record<string, string> = {};
  let staged: Staged | null = null;
  // A client gone before the handler ran (e.g. while its password was checked) has no more
  // events to send: parsing its form would wait for ever.
  if (request.raw.destroyed) throw new AppError('BAD_REQUEST', 'The upload was aborted.');
  // Errors of the form itself (no or wrong boundary, a part cut off, the client gone) are the
  // client's: 400. The file store's own failures (disk full, S3 down) stay 500s.
  let writing = false;
  let partError: unknown;
  try {
    for await (const part of request.parts()) {
      if (part.type === 'file') {
        const file = part as MultipartFile;
        if (file.fieldname !== 'image' || staged) {
          file.file.resume();
          continue;
        }
        const key = userFileKey(user, 'temp', '.uploads', randomUUID());
        const hash = createHash('sha256');
        const hashing = new Transform({
          transform(chunk: Buffer, _enc, cb) {
            hash.update(chunk);
            cb(null, chunk);
          },
        });
        // A client that goes away mid-file errors the part; pipeline() hands that error on to
        // `hashing`, whose consumer (the file store's write) rejects and removes what it wrote.
        // The listener makes sure that error can never go unhandled, whenever it comes.
        hashing.on('error', ignore);
        // The part may have failed already, before it was handed over.
        partError = file.file.errored ?? undefined;
        file.file.on('error', (err) => (partError ??= err));
        pipeline(file.file, hashing).catch(ignore);
        staged = { key, sha256: '', size: 0, filename: file.filename ?? '' };
        writing = true;
        const stat = await files.write(key, hashing);
        writing = false;
        if (file.file.truncated) throw uploadTooLarge(limit);
        staged.size = stat.size;
        staged.sha256 = hash.digest('hex');
      } else if (typeof part.value === 'string') {
        fields[part.fieldname] = part.value;
      }
    }
  } catch (err) {
    if (staged) await files.delete(staged.key).catch(() => false);
    const fromForm = !writing || partError !== undefined || request.raw.destroyed;
    if ((err as { code?: unknown }).code === 'FST_REQ_FILE_TOO_LARGE') throw uploadTooLarge(limit);
    throw fromForm ? formError(err) : err;
  }
  return { fields, staged };
}

/** A multipart parsing failure as the client's error. */
function formError(err: unknown): AppError {
  const mapped = toAppError(err);
  if (mapped.code !== 'INTERNAL') return mapped;
  const why = err instanceof Error && err.message.length < 200 ? ` (${err.message})` : '';
  return new AppError('BAD_REQUEST', `The upload form is malformed or incomplete${why}.`);
}

/**
 * Decides the upload's final name exactly as ComfyUI's `image_upload`: unless `overwrite`, an
 * existing file with different bytes makes `name (1).ext`, `name (2).ext`, ...; identical bytes
 * reuse the existing name. Then moves the staged file there (or drops it for a duplicate).
 */
async function placeUpload(files: FileStore, user: string, staged: Staged, fields: Record<string, string>) {
  const typeField = fields.type ?? 'input';
  if (!isArea(typeField)) throw new AppError('BAD_REQUEST', 'type must be input, output or temp.');
  const subfolder = fields.subfolder ?? '';
  const filename = staged.filename;
  if (!filename) throw new AppError('BAD_REQUEST', 'The image part has no file name.');
  // Both checked before anything lands: no traversal, no NUL, no absolute paths, no backslashes.
  const subRel = safeRelativePath(subfolder);
  safeRelativePath(subfolder, filename);
  const overwrite = fields.overwrite === 'true' || fields.overwrite === '1';
  const ext = extname(filename);
  const stem = filename.slice(0, filename.length - ext.length);
  let name = filename;
  let duplicate = false;
  if (!overwrite) {
    for (let i = 1; ; i++) {
      const key = userFileKey(user, typeField, subRel, name);
      const existing = await files.stat(key);
      if (!existing) break;
      if (existing.size === staged.size && (await sha256Of(await files.read(key))) === staged.sha256) {
        duplicate = true;
        break;
      }
      name = `${stem} (${i})${ext}`;
      if (i > 10_000) throw new AppError('CONFLICT', 'Too many files with this name.');
    }
  }
  if (duplicate) await files.delete(staged.key);
  else {
    await assertNoNameClash(files, user, typeField, subRel ? `${subRel}/${name}` : name);
    await files.move(staged.key, userFileKey(user, typeField, subRel, name));
    // A counted name put into `output` by hand raises that folder's floor (ComfyUI's naming).
    if (typeField === 'output') outputFolderChanged(files, user);
  }
  return { name, subfolder, type: typeField };
}

/** `view`, `upload/image`, `upload/mask` and `internal/files/<type>`, over the user's own files. */
export function fileRoutes(app: FastifyInstance, deps: GatewayDeps): void {
  const { files } = deps;

  both(app, 'GET', '/view', async (request: FastifyRequest, reply: FastifyReply) => {
    const user = userOf(request);
    const raw = q(request, 'filename');
    if (raw === undefined) throw new AppError('FILE_NOT_FOUND');
    const a = annotated(raw);
    if (!a.name) throw new AppError('BAD_REQUEST', 'filename is empty.');
    if (a.name.startsWith('/') || a.name.includes('..'))
      throw new AppError('INVALID_PATH', 'The file name may not be absolute or contain "..".');
    const area = a.area ?? q(request, 'type') ?? 'output';
    if (!isArea(area)) throw new AppError('BAD_REQUEST', 'type must be input, output or temp.');
    const subfolder = q(request, 'subfolder') ?? '';
    // ComfyUI serves os.path.basename(filename) from the (checked) subfolder.
    const base = a.name.split('/').pop()!;
    const key = userFileKey(user, area, subfolder, base);
    // An output announced while its worker still uploads it (`welcome.earlyOutputs`) is waited
    // for, as from ComfyUI, which had written it before announcing it; anything else is there or not.
    let s = await files.stat(key);
    // Its upload is in and still being written: served from the bytes in hand.
    let inHand = s ? undefined : deps.inFlight?.inHand(key);
    if (!s && !inHand && deps.inFlight) {
      const gone = new AbortController();
      // The client went away (before this look or while waiting): stop waiting.
      const leave = () => gone.abort();
      if (request.raw.destroyed || reply.raw.destroyed || reply.raw.writableEnded) gone.abort();
      else reply.raw.once('close', leave);
      await deps.inFlight.wait(key, undefined, gone.signal);
      // Waited: an abort on the answer's normal close would only make an AbortError for nobody.
      reply.raw.off('close', leave);
      // Looked again even when nothing was waited for: the upload may have landed during the first look.
      inHand = deps.inFlight.inHand(key);
      if (!inHand) s = await files.stat(key);
    }
    if (inHand) s = { key, size: inHand.bytes.length, mtimeMs: inHand.at };
    if (!s) throw new AppError('FILE_NOT_FOUND');

    // `preview=<format>;<quality>` and `channel=` are not re-encoded: the original is served with
    // its own content type (see docs/participant-guide.md, "What is approximated").
    let type = contentTypeOf(base);
    let disposition = dispositionFilename(base);
    reply.header('x-content-type-options', 'nosniff');
    if (isDangerousContentType(type)) {
      reply.header('vary', 'Sec-Fetch-Dest').header('cache-control', 'no-store');
      const svgInImg = type === 'image/svg+xml' && request.headers['sec-fetch-dest'] === 'image';
      if (!svgInImg) {
        type = 'application/octet-stream';
        disposition = `attachment; ${disposition}`;
      }
    }
    return sendStoredFile(request, reply, files, {
      key,
      stat: s,
      contentType: type,
      contentDisposition: disposition,
      ...(inHand ? { bytes: inHand.bytes } : {}),
    });
  });

  const limit = deps.config.UPLOAD_LIMIT;
  const upload = async (request: FastifyRequest, reply: FastifyReply, mask: boolean) => {
    const user = userOf(request);
    // A declared body that cannot fit is refused at once: a browser sending a 3 GB clip learns
    // it in a moment, not after the upload. The unread body means the connection cannot be reused.
    const declared = Number(request.headers['content-length']);
    if (Number.isFinite(declared) && declared > limit + FORM_OVERHEAD) {
      closeAfterReply(reply);
      throw uploadTooLarge(limit);
    }
    const { fields, staged } = await readUploadForm(request, files, user, limit);
    if (!staged) throw new AppError('BAD_REQUEST', 'The form has no "image" file part.');
    try {
      if (mask) {
        // ComfyUI pastes the uploaded alpha onto the referenced original server-side. The current
        // frontend's mask editor already uploads original + alpha, so the upload is kept as is;
        // the reference must still be one of the user's own files (checked, not required to exist).
        let ref: unknown;
        try {
          ref = JSON.parse(fields.original_ref ?? '');
        } catch {
          throw new AppError('BAD_REQUEST', 'original_ref must be JSON {filename, subfolder, type}.');
        }
        const r = (typeof ref === 'object' && ref !== null ? ref : {}) as Record<string, unknown>;
        const fn = annotated(typeof r.filename === 'string' ? r.filename : '');
        if (!fn.name || fn.name.startsWith('/') || fn.name.includes('..'))
          throw new AppError('INVALID_PATH', 'original_ref.filename is not allowed.');
        const refArea = fn.area ?? (typeof r.type === 'string' ? r.type : 'output');
        if (!isArea(refArea))
          throw new AppError('BAD_REQUEST', 'original_ref.type must be input, output or temp.');
        userFileKey(user, refArea, typeof r.subfolder === 'string' ? r.subfolder : '', fn.name);
      }
      return await placeUpload(files, user, staged, fields);
    } catch (err) {
      await files.delete(staged.key).catch(() => false);
      throw err;
    }
  };

  // The ComfyUI frontend shows a failed upload as `<status> - <statusText>` and never reads the
  // body: the limit goes into the reason phrase too (HTTP/1.1 only; HTTP/2 has none).
  const withReason = async (request: FastifyRequest, reply: FastifyReply, mask: boolean) => {
    try {
      return await upload(request, reply, mask);
    } catch (err) {
      if (err instanceof AppError && err.code === 'PAYLOAD_TOO_LARGE')
        reply.raw.statusMessage = `Payload Too Large (upload limit ${readableSize(limit)})`;
      throw err;
    }
  };
  both(app, 'POST', '/upload/image', async (request, reply) => withReason(request, reply, false));
  both(app, 'POST', '/upload/mask', async (request, reply) => withReason(request, reply, true));

  for (const prefix of ['/internal', '/api/internal']) {
    app.get(`${prefix}/files/:directoryType`, async (request, reply) => {
      const { directoryType } = request.params as { directoryType: string };
      if (!isArea(directoryType)) return reply.status(400).send({ error: 'Invalid directory type' });
      return (await topLevelFiles(files, userOf(request), directoryType)).map((f) => f.name);
    });
  }
}
