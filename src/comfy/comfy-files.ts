/**
 * File transfer of {@link ComfyClient}, streamed both ways: downloads from `/view` (with an idle
 * timeout on the body) and multipart uploads to `/upload/image`. The client's `view` and
 * `uploadImage` call these with its request plumbing (comfy-calls.ts).
 */
import { randomBytes } from 'node:crypto';
import { PassThrough, Readable, Transform, type TransformCallback } from 'node:stream';
import { ComfyHttpError, ComfyTimeoutError } from './client-errors.js';
import type { ComfyCall, ComfyCalls, RequestOptions } from './comfy-calls.js';
import { UploadResponseSchema, type UploadResponse } from './protocol.js';

export interface FileRefInput {
  filename: string;
  subfolder?: string;
  /** `output` (default), `input` or `temp`. */
  type?: string;
}

export interface ViewOptions extends RequestOptions {
  /** ComfyUI's `preview` query (`webp;90`, `jpeg;80`): a re-encoded preview instead of the file. */
  preview?: string;
  channel?: 'rgba' | 'rgb' | 'a';
  /** Longest pause between two chunks of the body. Default: the request timeout. */
  idleTimeoutMs?: number;
}

/** A `/view` download: a Node Readable with the answer's headers. */
export class ComfyFileStream extends PassThrough {
  contentType: string | null = null;
  /** From `Content-Length`; null when ComfyUI streamed without one. */
  contentLength: number | null = null;
}

export interface UploadOptions extends RequestOptions {
  filename: string;
  subfolder?: string;
  /** Replace a same-named file. ComfyUI otherwise keeps identical bytes' name or renames `x (1).png`. */
  overwrite?: boolean;
  /** ComfyUI's upload `type`: `input` (default), `temp` or `output`. */
  type?: 'input' | 'temp' | 'output';
  /** Byte count of a stream, for a Content-Length header (otherwise chunked). */
  size?: number;
  contentType?: string;
}

/** Closes the file stream with a timeout error when no chunk arrives for `ms`. */
class IdleTimeout extends Transform {
  private timer: NodeJS.Timeout | undefined;
  constructor(
    private readonly ms: number,
    private readonly onIdle: () => Error,
  ) {
    super();
    this.arm();
  }
  private arm(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.destroy(this.onIdle()), this.ms);
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.arm();
    cb(null, chunk);
  }
  override _flush(cb: TransformCallback): void {
    clearTimeout(this.timer);
    cb();
  }
  override _destroy(err: Error | null, cb: (error: Error | null) => void): void {
    clearTimeout(this.timer);
    cb(err);
  }
}

function quoteHeaderValue(s: string): string {
  return s.replace(/"/g, '%22').replace(/\r/g, '%0D').replace(/\n/g, '%0A');
}

/**
 * Streams a file from `/view`. Resolves once ComfyUI answered 200; the body then flows without
 * buffering, ending with a {@link ComfyTimeoutError} if it stalls for `idleTimeoutMs`. A missing
 * file rejects with a 404 {@link ComfyHttpError}.
 */
export async function viewFile(
  calls: ComfyCalls,
  ref: FileRefInput,
  opts: ViewOptions = {},
): Promise<ComfyFileStream> {
  const path = '/view';
  const timeoutMs = opts.timeoutMs ?? calls.timeoutMs;
  const query: Record<string, string | undefined> = {
    filename: ref.filename,
    subfolder: ref.subfolder ?? '',
    type: ref.type ?? 'output',
    preview: opts.preview,
    channel: opts.channel,
  };
  // The request is aborted on our own signal only after headers; the body has its idle timer.
  const ac = new AbortController();
  const signal = opts.signal ? AbortSignal.any([opts.signal, ac.signal]) : ac.signal;
  const call = await calls.send('GET', path, { query, timeoutMs, signal });
  const { res } = call;
  if (res.status !== 200) {
    const text = await calls.readText('GET', path, call, timeoutMs, opts.signal).catch(() => '');
    throw new ComfyHttpError('GET', path, res.status, text);
  }
  call.done();
  const out = new ComfyFileStream();
  // The caller's signal can abort the body before the caller has attached its own listeners (a
  // job dropped while its upload is opening): that error must reach whoever reads the stream,
  // never crash the process for want of a listener.
  out.on('error', () => undefined);
  out.contentType = res.header('content-type');
  const len = res.header('content-length');
  out.contentLength = len !== null && /^\d+$/.test(len) ? Number(len) : null;
  const source = res.stream();
  const idleMs = opts.idleTimeoutMs ?? timeoutMs;
  const idle = new IdleTimeout(idleMs, () => new ComfyTimeoutError('GET', path, idleMs));
  const fail = (err: Error) => {
    ac.abort(err);
    source.destroy();
    out.destroy(err);
  };
  source.on('error', (err) => fail(opts.signal?.aborted ? (opts.signal.reason as Error) : err));
  idle.on('error', fail);
  out.on('close', () => {
    if (!source.readableEnded) {
      ac.abort();
      source.destroy();
    }
    idle.destroy();
  });
  source.pipe(idle).pipe(out);
  return out;
}

/**
 * `POST /upload/image` (multipart), streaming `data` without buffering it. Resolves with the
 * name ComfyUI stored the file under (it may rename: `x (1).png`).
 */
export async function uploadFile(
  calls: ComfyCalls,
  data: Readable | Buffer | Uint8Array,
  opts: UploadOptions,
  uploadTimeoutMs: number,
): Promise<UploadResponse> {
  const path = '/upload/image';
  const boundary = `----comfy-multi-${randomBytes(12).toString('hex')}`;
  const field = (name: string, value: string) =>
    Buffer.from(
      `--${boundary}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`,
      'utf8',
    );
  const head = Buffer.concat([
    field('type', opts.type ?? 'input'),
    ...(opts.subfolder ? [field('subfolder', opts.subfolder)] : []),
    ...(opts.overwrite ? [field('overwrite', 'true')] : []),
    Buffer.from(
      `--${boundary}\r\nContent-Disposition: form-data; name="image"; filename="${quoteHeaderValue(opts.filename)}"\r\n` +
        `Content-Type: ${opts.contentType ?? 'application/octet-stream'}\r\n\r\n`,
      'utf8',
    ),
  ]);
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`, 'utf8');
  const size = Buffer.isBuffer(data) || data instanceof Uint8Array ? data.byteLength : opts.size;
  const headers: Record<string, string> = { 'Content-Type': `multipart/form-data; boundary=${boundary}` };
  if (size !== undefined) headers['Content-Length'] = String(head.length + size + tail.length);
  let sourceError: unknown = null;
  async function* parts(): AsyncGenerator<Uint8Array> {
    yield head;
    if (data instanceof Readable) {
      try {
        for await (const chunk of data) {
          yield typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Uint8Array);
        }
      } catch (err) {
        sourceError = err;
        throw err;
      }
    } else yield data;
    yield tail;
  }
  const body = Readable.from(parts());
  const timeoutMs = opts.timeoutMs ?? uploadTimeoutMs;
  let call: ComfyCall;
  try {
    call = await calls.send('POST', path, { body, headers, timeoutMs, signal: opts.signal });
  } catch (err) {
    // A failing source stream is the caller's problem, not an unreachable ComfyUI.
    throw sourceError ?? err;
  }
  const text = await calls.readText('POST', path, call, timeoutMs, opts.signal);
  if (call.res.status !== 200) throw new ComfyHttpError('POST', path, call.res.status, text);
  return calls.parse('POST', path, UploadResponseSchema, text);
}
