import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { parse } from '../http/parse.js';
import { toApiPrompt, type WorkflowPromptDeps } from './workflow-prompt.js';

/** A saved ComfyUI workflow in either format (the body of `POST /api/v1/workflows/convert`). */
export const convertWorkflowBody = z.strictObject({ workflow: z.record(z.string(), z.unknown()) });

/**
 * `POST /api/v1/workflows/convert`: a UI-format workflow (what ComfyUI's "Save" writes) → the API
 * prompt the frontend would queue for it, using the workers' object_info. An API-format workflow
 * comes back as it is. Instructor-only (see app.ts).
 */
export function workflowRoutes(app: FastifyInstance, deps: WorkflowPromptDeps): void {
  app.post('/workflows/convert', async (request) => {
    const { workflow } = parse(convertWorkflowBody, request.body);
    return toApiPrompt(workflow, deps);
  });
}
