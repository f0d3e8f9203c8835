import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { AuditLog } from '../admin/audit-log.js';
import type { AccountService } from '../auth/account-service.js';
import { isUiWorkflow } from '../comfy/workflow-convert/graph.js';
import { AppError } from '../errors.js';
import type { FileStore } from '../files/file-store.js';
import type { TemplateSource } from '../gateway/templates.js';
import { UserSpace } from '../gateway/user-space.js';
import { parseJsonBounded } from '../http/json-depth.js';
import { parse } from '../http/parse.js';
import type { JobStore } from '../store/types.js';
import type { TemplateLibrary } from '../templates/library.js';
import {
  MAX_TEMPLATE_BYTES,
  MAX_THUMBNAIL_BYTES,
  templateIdSchema,
  THUMBNAIL_TYPES,
  type ThumbnailType,
  type WorkshopTemplates,
} from '../templates/workshop-templates.js';
import { callerOf } from './jobs-routes.js';
import { toApiPrompt, type WorkflowPromptDeps } from './workflow-prompt.js';

export interface TemplateAdminDeps extends WorkflowPromptDeps {
  store: JobStore;
  workshopTemplates: WorkshopTemplates;
  templateLibrary: TemplateLibrary | null;
  accounts: AccountService;
  files: FileStore;
  audit: AuditLog;
  templates: TemplateSource;
  config: { SETTINGS_LIMIT: number };
}

/** A thumbnail as the dashboard sends it: a `data:image/...;base64,` URL, or null to drop it. */
const thumbnailField = z
  .string()
  .max(Math.ceil((MAX_THUMBNAIL_BYTES * 4) / 3) + 64)
  .regex(
    /^data:image\/(png|jpeg|webp);base64,[A-Za-z0-9+/=]+$/,
    'expected a data:image/png|jpeg|webp;base64 URL',
  )
  .nullable();
/** The workflow: the file's text (checked here, so a broken file gets one clear error) or its JSON. */
const workflowField = z.union([z.string().max(MAX_TEMPLATE_BYTES), z.record(z.string(), z.unknown())]);
const title = z.string().trim().min(1, 'a title is required').max(120);
const description = z.string().trim().max(2000);

export const addTemplateBody = z.strictObject({
  title,
  description: description.default(''),
  workflow: workflowField,
  thumbnail: thumbnailField.optional(),
  /** Make it the workshop's default workflow (opens on a participant's first login). */
  default: z.boolean().optional(),
});
export const replaceTemplateBody = z
  .strictObject({
    title: title.optional(),
    description: description.optional(),
    workflow: workflowField.optional(),
    thumbnail: thumbnailField.optional(),
  })
  .refine((b) => Object.keys(b).length > 0, 'give at least one of title, description, workflow, thumbnail');
export const reorderTemplatesBody = z.strictObject({ ids: z.array(templateIdSchema).max(1000) });
export const defaultTemplateBody = z.strictObject({ id: templateIdSchema.nullable() });
const idParams = z.strictObject({ id: templateIdSchema });

/** The dashboard calls these routes with its session; scripts with a token (shown as "(API)"). */
const viaOf = (request: FastifyRequest) => (request.principal?.via === 'session' ? 'dashboard' : 'api');

const BODY_LIMIT = MAX_TEMPLATE_BYTES * 2 + MAX_THUMBNAIL_BYTES * 2;

function decodeThumbnail(
  dataUrl: string | null | undefined,
): { type: ThumbnailType; body: Buffer } | null | undefined {
  if (dataUrl === undefined || dataUrl === null) return dataUrl;
  const m = /^data:(image\/(?:png|jpeg|webp));base64,(.*)$/.exec(dataUrl)!;
  const type = m[1] as ThumbnailType;
  const body = Buffer.from(m[2]!, 'base64');
  if (body.length > MAX_THUMBNAIL_BYTES)
    throw new AppError('PAYLOAD_TOO_LARGE', `The thumbnail is larger than ${MAX_THUMBNAIL_BYTES} bytes.`);
  // The browser labels files by their name; the first bytes say what they are.
  const magic: Record<ThumbnailType, (b: Buffer) => boolean> = {
    'image/png': (b) =>
      b.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])),
    'image/jpeg': (b) => b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff,
    'image/webp': (b) =>
      b.subarray(0, 4).toString('latin1') === 'RIFF' && b.subarray(8, 12).toString('latin1') === 'WEBP',
  };
  if (!magic[type](body))
    throw new AppError(
      'VALIDATION_FAILED',
      `The thumbnail is not a ${THUMBNAIL_TYPES[type].toUpperCase()} image.`,
    );
  return { type, body };
}

/**
 * A template's workflow, checked: valid JSON, a UI-format workflow (templates open on the canvas,
 * so an "Export (API)" file is refused), and converted with the workers' object_info when a worker
 * described its ComfyUI (`checked: true`): a node the converter cannot handle is named in the one
 * INVALID_WORKFLOW error. Returns the text to store (the file as uploaded).
 */
export async function checkTemplateWorkflow(
  raw: string | Record<string, unknown>,
  deps: WorkflowPromptDeps,
): Promise<{ text: string; checked: boolean; nodes: number }> {
  let value: unknown = raw;
  let text: string;
  if (typeof raw === 'string') {
    text = raw;
    try {
      value = parseJsonBounded(raw);
    } catch (err) {
      throw new AppError('INVALID_WORKFLOW', 'The file is not valid JSON, so it is not a ComfyUI workflow.', {
        cause: err,
      });
    }
  } else {
    text = JSON.stringify(raw);
  }
  if (Buffer.byteLength(text, 'utf8') > MAX_TEMPLATE_BYTES)
    throw new AppError('PAYLOAD_TOO_LARGE', `A template may be at most ${MAX_TEMPLATE_BYTES} bytes.`);
  if (!isUiWorkflow(value)) {
    throw new AppError(
      'INVALID_WORKFLOW',
      'This is not a workflow saved from ComfyUI\'s canvas (no "nodes" list). Save it with Workflow → Save (or Export), not Export (API).',
    );
  }
  let checked = true;
  try {
    await toApiPrompt(value, deps);
  } catch (err) {
    // No worker has described its ComfyUI yet: keep the file; the models page checks it later.
    if (err instanceof AppError && err.code === 'CONFLICT') checked = false;
    else throw err;
  }
  return { text, checked, nodes: (value.nodes as unknown[]).length };
}

/**
 * `/api/v1/templates` (instructors): the workshop's templates — list, upload, replace, reorder,
 * remove, mark the default workflow, and send one into every participant's workflow list. Every
 * change is audited (`template.*`), whether it works or not.
 */
export function templateAdminRoutes(app: FastifyInstance, deps: TemplateAdminDeps): void {
  const { workshopTemplates: ws, audit } = deps;

  app.get('/templates', async () => {
    const { templates, defaultId } = await ws.list();
    const v = deps.templateLibrary?.current() ?? null;
    return {
      templates: templates.map((t) => ({ ...t, default: t.id === defaultId })),
      defaultId,
      library: v
        ? {
            versionId: v.id,
            label: v.label,
            files: v.files.length,
            bytes: v.bytes,
            workerId: v.workerId,
            at: v.createdAt,
          }
        : null,
      libraryMirrored: deps.templateLibrary !== null,
    };
  });

  app.post('/templates', { bodyLimit: BODY_LIMIT }, async (request, reply) => {
    const body = parse(addTemplateBody, request.body);
    const by = callerOf(request);
    const meta = await audit.audited(by, 'template.add', null, async (d) => {
      d.via = viaOf(request);
      d.title = body.title;
      const wf = await checkTemplateWorkflow(body.workflow, deps);
      d.checked = wf.checked;
      const added = await ws.add(
        {
          title: body.title,
          description: body.description,
          workflow: wf.text,
          thumbnail: decodeThumbnail(body.thumbnail),
        },
        by,
      );
      d.id = added.id;
      if (body.default) await ws.setDefault(added.id);
      return { ...added, checked: wf.checked, default: body.default === true };
    });
    return reply.status(201).send(meta);
  });

  app.put('/templates/order', async (request) => {
    const { ids } = parse(reorderTemplatesBody, request.body);
    return audit.audited(callerOf(request), 'template.reorder', null, async (d) => {
      d.via = viaOf(request);
      d.order = ids;
      return { templates: await ws.reorder(ids) };
    });
  });

  app.put('/templates/default', async (request) => {
    const { id } = parse(defaultTemplateBody, request.body);
    return audit.audited(callerOf(request), 'template.default', id, async (d) => {
      d.via = viaOf(request);
      const { previous } = await ws.setDefault(id);
      d.previous = previous;
      return { defaultId: id };
    });
  });

  app.put('/templates/:id', { bodyLimit: BODY_LIMIT }, async (request) => {
    const { id } = parse(idParams, request.params);
    const body = parse(replaceTemplateBody, request.body);
    const by = callerOf(request);
    return audit.audited(by, 'template.replace', id, async (d) => {
      d.via = viaOf(request);
      d.fields = Object.keys(body);
      let checked: boolean | undefined;
      let workflow: string | undefined;
      if (body.workflow !== undefined) {
        const wf = await checkTemplateWorkflow(body.workflow, deps);
        workflow = wf.text;
        checked = wf.checked;
        d.checked = checked;
      }
      const meta = await ws.replace(
        id,
        {
          ...(body.title !== undefined ? { title: body.title } : {}),
          ...(body.description !== undefined ? { description: body.description } : {}),
          ...(workflow !== undefined ? { workflow } : {}),
          ...(body.thumbnail !== undefined ? { thumbnail: decodeThumbnail(body.thumbnail) } : {}),
        },
        by,
      );
      return { ...meta, ...(checked !== undefined ? { checked } : {}) };
    });
  });

  app.delete('/templates/:id', async (request) => {
    const { id } = parse(idParams, request.params);
    return audit.audited(callerOf(request), 'template.remove', id, async (d) => {
      d.via = viaOf(request);
      const old = await ws.remove(id);
      d.title = old.title;
      return { removed: id };
    });
  });

  app.get('/templates/:id/workflow', async (request, reply) => {
    const { id } = parse(idParams, request.params);
    const text = await ws.workflow(id);
    if (text === null) throw new AppError('NOT_FOUND', `No workshop template ${id}.`);
    return reply.type('application/json').send(text);
  });

  app.get('/templates/:id/thumbnail', async (request, reply) => {
    const { id } = parse(idParams, request.params);
    const pic = await ws.thumbnail(id);
    if (!pic) throw new AppError('NOT_FOUND', `Workshop template ${id} has no thumbnail.`);
    return reply.type(pic.type).header('cache-control', 'no-cache').send(pic.body);
  });

  /**
   * "Send this template to everyone": the workflow goes into every participant's `workflows/` as
   * `<title>.json`. A participant who already has a file of that name keeps theirs (counted as
   * `kept`): their copy may hold their own changes.
   */
  app.post('/templates/:id/send', async (request) => {
    const { id } = parse(idParams, request.params);
    return audit.audited(callerOf(request), 'template.send', id, async (d) => {
      d.via = viaOf(request);
      const t = await ws.get(id);
      const text = t ? await ws.workflow(id) : null;
      if (!t || text === null) throw new AppError('NOT_FOUND', `No workshop template ${id}.`);
      const space = new UserSpace(
        deps.files,
        deps.store,
        deps.templates,
        Date.now,
        deps.config.SETTINGS_LIMIT,
      );
      const body = Buffer.from(text, 'utf8');
      const participants = (await deps.accounts.list()).filter((a) => a.role === 'participant');
      const written: string[] = [];
      const kept: string[] = [];
      const failed: { user: string; error: string }[] = [];
      for (const a of participants) {
        try {
          if ((await space.giveWorkflow(a.name, t.fileName, body)) === 'written') written.push(a.name);
          else kept.push(a.name);
        } catch (err) {
          // One participant's space (a folder of that name, say) must not stop everyone else's copy.
          failed.push({ user: a.name, error: err instanceof Error ? err.message : String(err) });
        }
      }
      d.file = `workflows/${t.fileName}`;
      d.written = written.length;
      d.kept = kept.length;
      if (failed.length > 0) d.failed = failed.map((f) => f.user);
      return { file: `workflows/${t.fileName}`, written, kept, ...(failed.length > 0 ? { failed } : {}) };
    });
  });
}
