import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { AuditLog } from '../admin/audit-log.js';
import type { ModelDownloadService, StartDownloadInput } from '../dispatch/model-downloads.js';
import { shownUrl } from '../dispatch/model-downloads.js';
import { parse } from '../http/parse.js';
import { MODEL_DOWNLOAD_FOLDERS, modelFileNameSchema } from '../worker/protocol.js';

const LOCAL_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]']);

/**
 * The body of `POST /api/v1/models/downloads` (and the dashboard's action). `url` must be https;
 * plain http only to this machine and only with MODEL_DOWNLOADS_ALLOW_LOCAL_HTTP (tests). The file
 * name defaults to the URL's last path segment.
 */
export function downloadBodySchema(allowLocalHttp: boolean) {
  return withFileName(
    z.strictObject({
      ...modelEntryShape(allowLocalHttp),
      workers: z.union([z.literal('all'), z.array(z.string().min(1).max(200)).min(1).max(64)]).default('all'),
    }),
  );
}

/** `PUT /api/v1/models/workshop`: the files every worker must hold before it takes jobs. */
export function workshopBodySchema(allowLocalHttp: boolean) {
  return z.strictObject({
    models: z
      .array(withFileName(z.strictObject(modelEntryShape(allowLocalHttp))))
      .max(100)
      .refine(
        (ms) => new Set(ms.map((m) => `${m.folder}/${m.filename}`)).size === ms.length,
        'each folder/filename may appear once',
      ),
  });
}

/** One entry of the workshop list, as the dashboard adds it. */
export function workshopEntrySchema(allowLocalHttp: boolean) {
  return withFileName(z.strictObject(modelEntryShape(allowLocalHttp)));
}

/** The file name defaults to the URL's last path segment. */
function withFileName<T extends { url: string; filename?: string | undefined }>(schema: z.ZodType<T>) {
  return schema.transform((b, ctx) => {
    const ok = modelFileNameSchema.safeParse(b.filename ?? lastSegment(b.url));
    if (!ok.success) {
      ctx.addIssue({
        code: 'custom',
        path: ['filename'],
        message: 'give filename: the URL does not end in a usable file name',
      });
      return z.NEVER;
    }
    return { ...b, filename: ok.data };
  });
}

function modelEntryShape(allowLocalHttp: boolean) {
  return {
    url: z
      .string()
      .trim()
      .max(4096)
      .superRefine((s, ctx) => {
        let u: URL;
        try {
          u = new URL(s);
        } catch {
          ctx.addIssue({ code: 'custom', message: 'url must be a full https:// URL' });
          return;
        }
        if (u.username || u.password) {
          ctx.addIssue({
            code: 'custom',
            message: 'url must not carry a user name or password: use token',
          });
        } else if (u.protocol === 'http:' && allowLocalHttp && LOCAL_HOSTS.has(u.hostname)) {
          return;
        } else if (u.protocol !== 'https:') {
          ctx.addIssue({ code: 'custom', message: 'url must be https://' });
        }
      }),
    folder: z.enum(MODEL_DOWNLOAD_FOLDERS),
    filename: modelFileNameSchema.optional(),
    sha256: z
      .string()
      .trim()
      .toLowerCase()
      .regex(/^[0-9a-f]{64}$/, 'sha256 must be 64 hex digits')
      .optional(),
    /** A Hugging Face (or other) access token, sent as `Authorization: Bearer`. */
    token: z.string().trim().min(1).max(4096).optional(),
  };
}

function lastSegment(url: string): string {
  try {
    const seg = new URL(url).pathname.split('/').pop() ?? '';
    return decodeURIComponent(seg);
  } catch {
    return '';
  }
}

const idParams = z.strictObject({ id: z.string().min(1).max(64) });

/**
 * `/api/v1/models/downloads` (instructor-only, mounted in the /api/v1 plugin):
 * - `POST` `{url, folder, filename?, sha256?, token?, workers?}` → 202 `{downloads: [...]}`, one per
 *   target worker. Audited as `model.download` (the URL without its query; never the token).
 * - `GET` → `{downloads: [...]}`, newest first.
 * - `DELETE /:id` → the download, cancelled (its partial file is deleted). Audited as `model.cancel`.
 * - `GET /models/workshop` → `{models: [...]}`; `PUT` `{models: [{url, folder, filename?, sha256?,
 *   token?}]}` replaces the workshop's model list (a worker that registers without some of them
 *   fetches them before taking jobs). Audited as `model.workshop`. Tokens are never shown back.
 */
export function modelsRoutes(
  app: FastifyInstance,
  deps: {
    models: ModelDownloadService;
    audit: AuditLog;
    config: { MODEL_DOWNLOADS_ALLOW_LOCAL_HTTP: boolean };
  },
): void {
  const body = downloadBodySchema(deps.config.MODEL_DOWNLOADS_ALLOW_LOCAL_HTTP);
  const workshopBody = workshopBodySchema(deps.config.MODEL_DOWNLOADS_ALLOW_LOCAL_HTTP);

  app.get('/models/workshop', async () => ({ models: await deps.models.workshop() }));

  app.put('/models/workshop', (request) => {
    const { models } = parse(workshopBody, request.body);
    const by = request.principal?.name ?? 'unknown';
    return deps.audit.audited(by, 'model.workshop', null, async (d) => {
      d.files = models.map((m) => `${m.folder}/${m.filename}`);
      const views = await deps.models.setWorkshop(models);
      request.log.info({ by, files: d.files }, 'workshop model list changed');
      return { models: views };
    });
  });

  app.post('/models/downloads', async (request, reply) => {
    const input = parse(body, request.body);
    const by = request.principal?.name ?? 'unknown';
    const downloads = await startAudited(deps, input, by, 'api');
    return reply.status(202).send({ downloads });
  });

  app.get('/models/downloads', () => ({ downloads: deps.models.list() }));

  app.delete('/models/downloads/:id', (request) => {
    const { id } = parse(idParams, request.params);
    return cancelAudited(deps, id, request.principal?.name ?? 'unknown', 'api');
  });
}

/** Starts a download and records it (shared with the dashboard's action). */
export function startAudited(
  deps: { models: ModelDownloadService; audit: AuditLog },
  input: StartDownloadInput,
  by: string,
  via: 'api' | 'dashboard',
) {
  return deps.audit.audited(by, 'model.download', `${input.folder}/${input.filename}`, async (d) => {
    Object.assign(d, {
      via,
      url: shownUrl(input.url),
      folder: input.folder,
      filename: input.filename,
      sha256: input.sha256 ?? null,
      withToken: input.token !== undefined,
      workers: input.workers,
    });
    // Through the process holding each worker when there are several.
    const downloads = await deps.models.request(input, by);
    d.ids = downloads.map((x) => x.id);
    return downloads;
  });
}

export function cancelAudited(
  deps: { models: ModelDownloadService; audit: AuditLog },
  id: string,
  by: string,
  via: 'api' | 'dashboard',
) {
  return deps.audit.audited(by, 'model.cancel', id, async (d) => {
    d.via = via;
    const view = await deps.models.requestCancel(id);
    Object.assign(d, { workerId: view.workerId, folder: view.folder, filename: view.filename });
    return view;
  });
}
