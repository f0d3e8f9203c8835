import { createHash, type Hash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { OutputsInFlight } from './outputs-in-flight.js';
import { pipeline, Transform } from 'node:stream';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { AppError } from '../errors.js';
import type { FileStat, FileStore } from '../files/file-store.js';
import { safeRelativePath, userFileKey } from '../files/safe-path.js';
import { parse } from '../http/parse.js';
import { LoraLibrary } from '../loras/lora-library.js';
import type { Job, JobOutput, JobStore } from '../store/types.js';
import { OutputNamer } from './output-names.js';
import { tokenNameOfWorker, type WorkerReader } from './worker-registry.js';

export interface WorkerFilesDeps {
  store: JobStore;
  files: FileStore;
  /** Largest output file accepted, in bytes. */
  uploadLimit: number;
  /** One process: wakes a `/view` waiting for an output announced before it was stored. */
  inFlight?: OutputsInFlight | null;
  /**
   * This process's connected workers. With one process (`inFlight` set) they are the truth about
   * who holds what, kept in step with the store by the queue's own events, so an output upload
   * is checked against them without reading the job (see {@link heldHere}).
   */
  workers?: Pick<WorkerReader, 'holdersOf'>;
}

/**
 * Outputs up to this size (images) are taken whole and served from memory until stored (see the
 * upload route); larger ones (videos) stream to the store.
 */
const IN_HAND_MAX = 1024 * 1024;

const jobId = z.string().min(1).max(128);

const uploadParams = z.object({
  jobId,
  attempt: z.coerce.number().int().min(1).max(1_000_000),
  node: z.string().regex(/^[A-Za-z0-9_:.-]{1,64}$/, 'node ids are 1–64 characters of A-Z a-z 0-9 _ : . -'),
  '*': z.string().min(1).max(2048),
});

const uploadQuery = z.object({
  type: z.enum(['output', 'temp']).default('output'),
  kind: z
    .string()
    .regex(/^[A-Za-z0-9_-]{1,64}$/)
    .default('images'),
});

const inputParams = z.object({ jobId, '*': z.string().min(1).max(2048) });
const jobParams = z.object({ jobId });

/**
 * The attempt, when a worker of the calling token connected to this process holds it and nothing
 * is under way to take it away (a cancel or a hand-back): its upload needs no store read, which
 * cost 0.2 ms of the control plane on every job's round trip. Anything else (another process's
 * worker, a late attempt, a cancel in progress) is for {@link heldBy} to judge from the store.
 */
function heldHere(
  request: FastifyRequest,
  workers: Pick<WorkerReader, 'holdersOf'>,
  id: string,
  attempt: number,
): Pick<Job, 'id' | 'user'> | null {
  const token = request.workerTokenName;
  if (!token) return null;
  for (const { worker, held } of workers.holdersOf(id)) {
    if (
      worker.tokenName === token &&
      worker.link?.open === true &&
      held.attempt === attempt &&
      !held.cancelRequested &&
      !held.releaseRequested
    )
      return { id: held.jobId, user: held.user };
  }
  return null;
}

/**
 * The job as held by the calling worker token; throws JOB_NOT_FOUND, FORBIDDEN (another worker
 * holds it) or CONFLICT (not running, or a different attempt).
 */
async function heldBy(request: FastifyRequest, store: JobStore, id: string, attempt?: number): Promise<Job> {
  const token = request.workerTokenName;
  const job = await store.getJob(id);
  if (!job) throw new AppError('JOB_NOT_FOUND', `No job with id ${id}.`);
  // Outputs of an attempt that lost its lease but ran (the control plane was away) are still
  // welcome while its finish can be accepted: the job waits in the queue under that attempt, or a
  // later attempt runs (the first finish wins). See JobStore.complete.
  if (attempt !== undefined && token && isLateAttempt(job, attempt)) return job;
  if (!token || !job.workerId || tokenNameOfWorker(job.workerId) !== token) {
    throw new AppError('FORBIDDEN', 'This worker does not hold that job.');
  }
  if (job.status !== 'running' || (attempt !== undefined && job.attempts !== attempt)) {
    const which = attempt === undefined ? `Job ${id}` : `Attempt ${attempt} of job ${id}`;
    throw new AppError('CONFLICT', `${which} is no longer running on this worker.`);
  }
  return job;
}

function isLateAttempt(job: Job, attempt: number): boolean {
  return (
    (job.status === 'pending' && job.attempts === attempt) ||
    (job.status === 'running' && job.attempts > attempt)
  );
}

/**
 * The whole body of a small upload, counted against `limit` and hashed on the way. Read with plain
 * events: a stream pipeline makes an AbortError (with its stack trace) every time it finishes.
 */
function wholeBody(req: IncomingMessage, limit: number, hash: Hash): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    // Cut off before we got here: its `close` has been and gone.
    if (req.destroyed) {
      reject(new Error('the upload was cut off'));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    const done = (err?: unknown): void => {
      req.off('data', onData).off('end', onEnd).off('error', done).off('close', onClose);
      if (err) reject(err instanceof Error ? err : new Error(String(err)));
      else resolve(Buffer.concat(chunks, size));
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limit) {
        req.destroy();
        done(new AppError('PAYLOAD_TOO_LARGE', `Output files may be at most ${limit} bytes.`));
        return;
      }
      hash.update(chunk);
      chunks.push(chunk);
    };
    const onEnd = (): void => done();
    const onClose = (): void => done(new Error('the upload was cut off'));
    req.on('data', onData).on('end', onEnd).on('error', done).on('close', onClose);
  });
}

/** Splits `a/b/c.png` into subfolder `a/b` and filename `c.png`, refusing anything unsafe. */
function splitPath(rel: string): { subfolder: string; filename: string } {
  const i = rel.lastIndexOf('/');
  const subfolder = safeRelativePath(i < 0 ? '' : rel.slice(0, i));
  const filename = safeRelativePath(i < 0 ? rel : rel.slice(i + 1));
  if (filename === '' || filename.includes('/'))
    throw new AppError('INVALID_PATH', 'The path must end with a file name.');
  return { subfolder, filename };
}

/**
 * File transfer for worker agents (mounted under /worker/v1 with the worker-token hook):
 *
 * - `PUT /jobs/:jobId/attempts/:attempt/outputs/:node/<subfolder/filename>?type=output|temp&kind=images`
 *   streams one output file of the job into its owner's space, under the participant-facing name of
 *   `<subfolder>/<filename>` (the job's own name; see output-names.ts),
 *   hashing and counting it on the way, and answers the {@link JobOutput} to report in
 *   `job_completed`. Only the worker holding that attempt may upload; any body type is accepted.
 * - `GET /jobs/:jobId/inputs/<path>` streams `<user>/input/<path>` to the worker holding the job.
 * - `GET /jobs/:jobId/loras` lists the job owner's own LoRAs (`{loras: [{name, size, sha256}]}`),
 *   and `GET /jobs/:jobId/loras/<name>` streams one (its sha256 in `X-Content-SHA256`), to the
 *   worker holding the job only: a worker learns a participant's LoRAs only while running their job.
 */
export async function workerFilesRoutes(app: FastifyInstance, deps: WorkerFilesDeps): Promise<void> {
  const namer = new OutputNamer(deps.store, deps.files);
  // Only read here: the limits are the gateway's business.
  const loras = new LoraLibrary(deps.files, deps.store, { maxFileBytes: 0, quotaBytes: 0 });
  await app.register(async (files) => {
    // Bodies here are files: take any content type and leave the stream to the handler.
    files.removeAllContentTypeParsers();
    files.addContentTypeParser('*', (_request, _payload, done) => done(null));

    files.put('/jobs/:jobId/attempts/:attempt/outputs/:node/*', async (request) => {
      const params = parse(uploadParams, request.params);
      const query = parse(uploadQuery, request.query);
      const { subfolder, filename } = splitPath(params['*']);
      const job =
        (deps.inFlight && deps.workers && heldHere(request, deps.workers, params.jobId, params.attempt)) ||
        (await heldBy(request, deps.store, params.jobId, params.attempt));
      // Stored under the name the participant sees (ComfyUI's naming, see output-names.ts); the
      // answer keeps the job's own name, which the agent reports and the control plane maps again.
      // A local store takes the bytes while the name is decided (both are on every job's round
      // trip); object storage gets them once it is.
      const key = namer
        .name(job.user, job.id, [{ type: query.type, subfolder, filename }])
        .then(([facing]) => userFileKey(job.user, query.type, facing!.subfolder, facing!.filename));
      key.catch(() => undefined);

      const declared = Number(request.headers['content-length'] ?? NaN);
      if (Number.isFinite(declared) && declared > deps.uploadLimit) {
        throw new AppError('PAYLOAD_TOO_LARGE', `Output files may be at most ${deps.uploadLimit} bytes.`);
      }
      const hash = createHash('sha256');
      let size = 0;
      const limit = deps.uploadLimit;
      let stored: FileStat;
      if (deps.inFlight && Number.isFinite(declared) && declared <= IN_HAND_MAX) {
        // Small (an image) and a `/view` may wait for it: taken whole and handed to `/view` before
        // it is stored. Stored two turns of the loop later: the next turn's I/O phase reads a
        // `/view` that came in meanwhile (its client asked the moment it heard of the file) and
        // answers it first. The disk write, 0.4 ms, was on every job's round trip. No timer: idle,
        // the turns take microseconds.
        const bytes = await wholeBody(request.raw, limit, hash);
        size = bytes.length;
        const k = await key;
        const served = deps.inFlight.arrived(k, bytes);
        await new Promise((resolve) => setImmediate(() => setImmediate(resolve)));
        try {
          // Stored with the time it was served under: its ETag and Last-Modified stay the same.
          stored = await deps.files.write(k, bytes, served ? { mtimeMs: served.at } : {});
        } catch (err) {
          deps.inFlight.notStored(k);
          throw err;
        }
      } else {
        const meter = new Transform({
          transform(chunk: Buffer, _enc, cb) {
            size += chunk.length;
            if (size > limit)
              cb(new AppError('PAYLOAD_TOO_LARGE', `Output files may be at most ${limit} bytes.`));
            else {
              hash.update(chunk);
              cb(null, chunk);
            }
          },
        });
        // pipeline destroys `meter` with the error when the upload aborts, so the write fails cleanly.
        const body = () => pipeline(request.raw, meter, () => {});
        stored = deps.files.writeLate
          ? await deps.files.writeLate(key, body())
          : await deps.files.write(await key, body());
      }
      const output: JobOutput = {
        nodeId: params.node,
        filename,
        subfolder,
        type: query.type,
        kind: query.kind,
        size,
        sha256: hash.digest('hex'),
      };
      // A participant's `/view` may be waiting for it (announced early, see outputs-in-flight.ts).
      deps.inFlight?.stored(stored.key);
      request.log.info({ jobId: job.id, user: job.user, key: stored.key, size }, 'stored job output');
      return output;
    });

    files.get('/jobs/:jobId/inputs/*', async (request, reply) => {
      const params = parse(inputParams, request.params);
      const job = await heldBy(request, deps.store, params.jobId);
      const key = userFileKey(job.user, 'input', params['*']);
      const stat = await deps.files.stat(key);
      if (!stat) throw new AppError('FILE_NOT_FOUND', 'The job refers to an input file that does not exist.');
      const stream = await deps.files.read(key);
      return reply.header('content-length', String(stat.size)).type('application/octet-stream').send(stream);
    });

    files.get('/jobs/:jobId/loras', async (request) => {
      const params = parse(jobParams, request.params);
      const job = await heldBy(request, deps.store, params.jobId);
      const list = await loras.list(job.user);
      return { loras: list.map(({ name, size, sha256 }) => ({ name, size, sha256 })) };
    });

    files.get('/jobs/:jobId/loras/*', async (request, reply) => {
      const params = parse(inputParams, request.params);
      const job = await heldBy(request, deps.store, params.jobId);
      const { entry, stream } = await loras.open(job.user, params['*']);
      request.log.info(
        { jobId: job.id, user: job.user, lora: entry.name },
        'worker fetches a participant LoRA',
      );
      return reply
        .header('content-length', String(entry.size))
        .header('x-content-sha256', entry.sha256)
        .type('application/octet-stream')
        .send(stream);
    });
  });
}
