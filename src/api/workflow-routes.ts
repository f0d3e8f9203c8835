import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { parse } from '../http/parse.js';
import type { ObjectInfo } from '../comfy/protocol.js';
import { workflowModelNeeds } from '../comfy/workflow-needs.js';
import { missingModels } from '../comfy/workflow-models.js';
import { loadEnv } from '../dispatch/env-snapshots.js';
import type { TemplateSource } from '../gateway/templates.js';
import type { WorkshopTemplates } from '../templates/workshop-templates.js';
import { toApiPrompt, type WorkflowPromptDeps } from './workflow-prompt.js';

export interface WorkflowRoutesDeps extends WorkflowPromptDeps {
  templates: TemplateSource;
  /** The dashboard's workshop templates (listed first, by title, with their id). */
  workshopTemplates?: WorkshopTemplates;
  /** The worker registry: names and environment hashes of the known workers. */
  workers: WorkflowPromptDeps['workers'] & {
    list?(): readonly { id: string; name: string; connected: boolean; envHash: string | null }[];
  };
}

/** A saved ComfyUI workflow in either format (the body of `POST /api/v1/workflows/convert`). */
export const convertWorkflowBody = z.strictObject({ workflow: z.record(z.string(), z.unknown()) });

/**
 * `POST /api/v1/workflows/convert`: a UI-format workflow (what ComfyUI's "Save" writes) → the API
 * prompt the frontend would queue for it, using the workers' object_info. An API-format workflow
 * comes back as it is. Instructor-only (see app.ts).
 */
export function workflowRoutes(app: FastifyInstance, deps: WorkflowRoutesDeps): void {
  app.post('/workflows/convert', async (request) => {
    const { workflow } = parse(convertWorkflowBody, request.body);
    return toApiPrompt(workflow, deps);
  });

  /**
   * `GET /api/v1/templates/models`: per template (the dashboard's workshop templates, TEMPLATES_DIR
   * and DEFAULT_WORKFLOW), per known
   * worker, the model files it needs and which of them that worker lacks (`missing`; `optional`
   * files only muted or bypassed nodes load), or why that worker cannot run it (`error`).
   */
  app.get('/templates/models', async () => {
    const workers = (deps.workers?.list?.() ?? []).filter((w) => w.envHash);
    const envs = new Map<string, Awaited<ReturnType<typeof loadEnv>>>();
    for (const w of workers)
      if (!envs.has(w.envHash!)) envs.set(w.envHash!, await loadEnv(deps.store, w.envHash!));
    const sources: { name: string; id?: string; body: Buffer | null }[] = [];
    for (const t of (await deps.workshopTemplates?.list())?.templates ?? []) {
      const text = await deps.workshopTemplates!.workflow(t.id);
      sources.push({ name: t.title, id: t.id, body: text === null ? null : Buffer.from(text, 'utf8') });
    }
    for (const t of await deps.templates.list())
      sources.push({ name: t.path, body: await deps.templates.read(t.path) });
    const def = await deps.templates.defaultWorkflow();
    if (def) sources.push({ name: def.name, body: def.body });
    const templates = sources.map(({ name, id, body }) => {
      let workflow: unknown;
      try {
        workflow = JSON.parse(body?.toString('utf8') ?? '');
      } catch {
        return { name, ...(id ? { id } : {}), error: 'not valid JSON', workers: [] };
      }
      return {
        name,
        ...(id ? { id } : {}),
        workers: workers.map((w) => {
          const env = envs.get(w.envHash!);
          if (!env)
            return { id: w.id, name: w.name, connected: w.connected, error: 'environment not stored' };
          const needs = workflowModelNeeds(workflow, env.objectInfo as ObjectInfo);
          return {
            id: w.id,
            name: w.name,
            connected: w.connected,
            needed: needs.needed,
            optional: needs.optional,
            missing: missingModels(needs.needed, env.models),
            missingOptional: missingModels(needs.optional, env.models),
            ...(needs.error ? { error: needs.error } : {}),
          };
        }),
      };
    });
    return { templates };
  });
}
