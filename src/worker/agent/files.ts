/**
 * Moving files between ComfyUI and the control plane, streamed end to end:
 * - outputs: ComfyUI's output folder (when the agent knows it, `--output-dir`) or its `/view` →
 *   `PUT /worker/v1/jobs/:jobId/attempts/:attempt/outputs/:node/<path>`;
 * - inputs: `GET /worker/v1/jobs/:jobId/inputs/<path>` → ComfyUI `/upload/image` in the user's
 *   own input subfolder.
 */
import { closeSync, createReadStream, fstatSync, openSync, readFileSync, realpathSync } from 'node:fs';
import { isAbsolute, relative, resolve } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { jobOutputSchema } from '../protocol.js';
import type { JobOutput } from '../../store/types.js';
import { stripOutputNamespace, type InputReference, type OutputNamespace } from '../../comfy/prompt-tools.js';
import type { ComfyClient } from '../../comfy/comfy-client.js';
import { encodePath, getStream, HttpError, putStream } from './http-stream.js';

export interface ControlPlaneHttp {
  serverUrl: string;
  token: string;
}

/** `<server>/worker/v1<path>` over HTTP(S), whichever scheme the server URL was given in. */
export function endpoint(cp: ControlPlaneHttp, path: string): string {
  const base = cp.serverUrl.replace(/^ws/, 'http').replace(/\/+$/, '');
  return `${base}/worker/v1${path}`;
}

const SAFE_SEGMENT = /^[A-Za-z0-9._-]{1,128}$/;

/** A path segment for the job: its id when that is path-safe, else a sanitized form. */
export function jobSegment(jobId: string): string {
  if (SAFE_SEGMENT.test(jobId) && !jobId.startsWith('.')) return jobId;
  return (
    jobId
      .replace(/[^A-Za-z0-9._-]+/g, '_')
      .replace(/^[._]+/, '')
      .slice(0, 128) || 'job'
  );
}

/**
 * Where an output goes in the owner's space: `<jobId>/<the user's own subfolder>/<filename>`.
 * ComfyUI saved it under `<user>/<jobId>/...` (the namespaced prefix); the user part is dropped
 * (the control plane files it under the user anyway) and the job part kept, so two jobs that both
 * produce `ComfyUI_00001_.png` never overwrite each other and a retried attempt overwrites its own
 * earlier partial upload. Files outside the namespace (previews in temp, nodes without a prefix)
 * keep their ComfyUI subfolder under the job folder.
 */
export function outputUploadPath(
  out: Pick<JobOutput, 'subfolder' | 'filename'>,
  ns: OutputNamespace,
): string {
  const own = stripOutputNamespace(out.subfolder, ns) ?? out.subfolder;
  return [jobSegment(ns.jobId), own, out.filename].filter((s) => s !== '').join('/');
}

/**
 * An output file read straight from ComfyUI's output folder: ComfyUI wrote it before its
 * `executed` named it, and a busy ComfyUI is slow to serve `/view` (its event loop shares the
 * Python process with the running prompt). Null, and `/view` serves it instead, when it is not an
 * `output` file, its name (or a link on the way) would leave the folder, or it cannot be opened
 * (not there, a folder, no right to read it).
 */
/** Outputs up to this size are read from the output folder in one call; larger ones are streamed. */
const SMALL_OUTPUT = 4 * 1024 * 1024;

function openInOutputDir(outputDir: string, out: JobOutput): Buffer | Readable | null {
  // A file name is a name, as ComfyUI's `/view` takes it: no folder in it, no `..`.
  if (out.type !== 'output' || out.filename === '' || /[/\\]|^\.\.?$/.test(out.filename)) return null;
  const inside = (dir: string, path: string) => {
    const rel = relative(dir, path);
    return rel !== '' && !rel.startsWith('..') && !isAbsolute(rel);
  };
  const path = resolve(outputDir, out.subfolder, out.filename);
  if (!inside(outputDir, path)) return null;
  // Synchronous on purpose: a few system calls on a local disk take microseconds, and each of
  // them through the thread pool cost a turn of a loop that is busy relaying ComfyUI's events.
  let fd: number | null = null;
  try {
    // The native realpath: one system call, where the JS one makes one per path segment.
    const real = realpathSync.native(path);
    if (!inside(realpathSync.native(outputDir), real)) return null;
    fd = openSync(real, 'r');
    const st = fstatSync(fd);
    if (!st.isFile()) return null;
    // An image: read at once (one call), sent from memory.
    if (st.size <= SMALL_OUTPUT) return readFileSync(fd);
    // A video: streamed; the stream closes the file when it ends or is destroyed.
    const stream = createReadStream('', { fd, autoClose: true });
    fd = null;
    return stream;
  } catch {
    return null;
  } finally {
    if (fd !== null) closeSync(fd);
  }
}

/** Streams one output from ComfyUI to the control plane; returns the output as stored there. */
export async function transferOutput(
  comfy: ComfyClient,
  cp: ControlPlaneHttp,
  job: { jobId: string; attempt: number; user: string },
  out: JobOutput,
  signal?: AbortSignal,
  outputDir?: string | null,
): Promise<JobOutput> {
  const path = outputUploadPath(out, { user: job.user, jobId: job.jobId });
  const query = new URLSearchParams({ type: out.type, kind: out.kind });
  const url = endpoint(
    cp,
    `/jobs/${encodeURIComponent(job.jobId)}/attempts/${job.attempt}/outputs/${encodeURIComponent(out.nodeId)}/${encodePath(path)}?${query.toString()}`,
  );
  const local = outputDir ? openInOutputDir(outputDir, out) : null;
  let res: Awaited<ReturnType<typeof putStream>>;
  if (Buffer.isBuffer(local)) {
    // An image read from ComfyUI's folder: the request and its bytes go out in one write.
    res = await putStream(url, { authorization: `Bearer ${cp.token}` }, local, signal);
  } else {
    // The PUT goes out at once, while ComfyUI looks the file up (its /view is slow while it is
    // busy): the control plane checks the job and names the file meanwhile, and the bytes follow
    // as ComfyUI sends them. So the length is not known up front (chunked); the control plane
    // counts anyway.
    const body = new PassThrough();
    const putting = putStream(url, { authorization: `Bearer ${cp.token}` }, body, signal);
    // Whatever happens to the PUT is awaited below; a ComfyUI failure must not leave it unhandled.
    putting.catch(() => undefined);
    let source: Readable;
    try {
      source = local ?? (await comfy.view(out, signal ? { signal } : {}));
    } catch (err) {
      // A ComfyUI failure is reported as one (the caller tells it from a control plane failure).
      body.destroy();
      throw err;
    }
    // A source failure destroys `body`, which fails the PUT; a refused PUT destroys `body` and so this.
    pipeline(source, body).catch(() => undefined);
    res = await putting;
  }
  const stored = jobOutputSchema.safeParse(res.json);
  // A file entry's further fields (VHS `format`, `frame_rate`, ...) are the node's, not the server's.
  const extra = out.extra ? { extra: out.extra } : {};
  if (stored.success) return { ...stored.data, ...extra };
  // The server did not describe what it stored: report what we sent.
  const slash = path.lastIndexOf('/');
  return {
    nodeId: out.nodeId,
    filename: out.filename,
    subfolder: slash < 0 ? '' : path.slice(0, slash),
    type: out.type,
    kind: out.kind,
    size: res.size,
    sha256: res.sha256,
    ...extra,
  };
}

/**
 * Fetches one input a prompt references from the control plane and uploads it to ComfyUI under
 * `<user>/<its subfolder>`. Returns the value to put in the prompt. When the control plane does
 * not have the file, the reference is still confined to `<user>/…` (ComfyUI's validation then
 * reports a missing file): a prompt must never reach another user's files in ComfyUI's folders.
 */
export async function transferInput(
  comfy: ComfyClient,
  cp: ControlPlaneHttp,
  job: { jobId: string; user: string },
  ref: InputReference,
  signal?: AbortSignal,
): Promise<string> {
  const rel = [ref.subfolder, ref.filename].filter((s) => s !== '').join('/');
  const subfolder = [job.user, ref.subfolder].filter((s) => s !== '').join('/');
  const url = endpoint(cp, `/jobs/${encodeURIComponent(job.jobId)}/inputs/${encodePath(rel)}`);
  let res;
  try {
    res = await getStream(url, { authorization: `Bearer ${cp.token}` }, signal);
  } catch (err) {
    if (err instanceof HttpError && err.status === 404) return `${subfolder}/${ref.filename}`;
    throw err;
  }
  const length = Number(res.headers['content-length']);
  const uploaded = await comfy.uploadImage(res, {
    filename: ref.filename,
    subfolder,
    type: 'input',
    ...(Number.isFinite(length) ? { size: length } : {}),
    ...(signal ? { signal } : {}),
  });
  return uploaded.subfolder ? `${uploaded.subfolder}/${uploaded.name}` : uploaded.name;
}

/**
 * A reference into ComfyUI's output or temp folder (`x.png [output]`), confined to the user's own
 * part of it: `<user>/x.png [output]`. Left as is when it already points there.
 */
export function confineReference(ref: InputReference, user: string): string {
  const rel = [ref.subfolder, ref.filename].filter((s) => s !== '').join('/');
  const own = rel.startsWith(`${user}/`) ? rel : `${user}/${rel}`;
  return `${own} [${ref.type}]`;
}
