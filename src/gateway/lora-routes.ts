import type { MultipartFile } from '@fastify/multipart';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { AppError } from '../errors.js';
import { toAppError } from '../http/error-handler.js';
import { parse } from '../http/parse.js';
import { loraLibraryOf } from '../loras/lora-library.js';
import type { GatewayDeps } from './deps.js';
import { closeAfterReply, userOf } from './http-util.js';

/** Room for the form around the file (boundary, part headers): see file-routes.ts. */
const FORM_OVERHEAD = 64 * 1024;

const nameParams = z.object({ name: z.string().min(1).max(255) });

/**
 * A participant's own LoRAs, under `/<user>/api/loras` (not ComfyUI routes: ComfyUI has no model
 * upload; the workshop extension and scripts use these):
 *
 * - `GET` lists them with the space used and the limits;
 * - `POST` (multipart, one file part, any field name) checks and stores one `.safetensors` file
 *   under its file name, replacing one of the same name;
 * - `DELETE /<name>` removes one.
 *
 * Once stored, a LoRA appears in that participant's loader lists only (object_info, `/models/loras`)
 * and workers fetch it for that participant's jobs (see dispatch/worker-files-routes.ts).
 */
export function loraRoutes(app: FastifyInstance, deps: GatewayDeps): void {
  const library = loraLibraryOf(deps);
  const { maxFileBytes, quotaBytes } = library.limits;

  const listing = async (user: string) => {
    const loras = await library.list(user);
    return {
      loras,
      usedBytes: loras.reduce((a, e) => a + e.size, 0),
      quotaBytes,
      maxFileBytes,
    };
  };

  app.get('/api/loras', async (request) => listing(userOf(request)));

  app.post('/api/loras', async (request: FastifyRequest, reply: FastifyReply) => {
    const user = userOf(request);
    const declared = Number(request.headers['content-length']);
    if (Number.isFinite(declared) && declared > maxFileBytes + FORM_OVERHEAD) {
      // The body stays unread: the connection cannot be reused.
      closeAfterReply(reply);
      throw library.tooLarge();
    }
    if (!request.isMultipart())
      throw new AppError(
        'UNSUPPORTED_MEDIA_TYPE',
        'Send the LoRA as multipart/form-data with one file part.',
      );
    let file: MultipartFile | undefined;
    try {
      // One byte more than the limit reaches the library, which refuses it with the limit named.
      file = await request.file({ limits: { fileSize: maxFileBytes + 1, files: 1, fields: 10 } });
    } catch (err) {
      throw toAppError(err).code === 'INTERNAL'
        ? new AppError('BAD_REQUEST', 'The upload form is malformed or incomplete.')
        : err;
    }
    if (!file) throw new AppError('BAD_REQUEST', 'The form has no file part.');
    const part = file;
    try {
      const entry = await library.upload(user, part.filename ?? '', part.file);
      request.log.info({ user, lora: entry.name, size: entry.size }, 'participant LoRA stored');
      return reply.status(201).send(entry);
    } catch (err) {
      // The rest of the body is not wanted; make sure nothing waits on it.
      if (!part.file.readableEnded) {
        part.file.resume();
        closeAfterReply(reply);
      }
      if ((err as { code?: unknown }).code === 'FST_REQ_FILE_TOO_LARGE') throw library.tooLarge();
      // The client went away or cut the form short: its error (400), not the server's.
      if (!(err instanceof AppError) && (request.raw.destroyed || part.file.errored))
        throw new AppError('BAD_REQUEST', 'The upload was aborted or its form is incomplete.');
      throw err;
    }
  });

  app.delete('/api/loras/:name', async (request, reply) => {
    const { name } = parse(nameParams, request.params);
    if (!(await library.remove(userOf(request), name)))
      throw new AppError('FILE_NOT_FOUND', `You have no LoRA named ${name}.`);
    return reply.status(204).send();
  });
}
