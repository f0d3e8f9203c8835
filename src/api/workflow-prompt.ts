/**
 * UI-format workflow → API prompt (with the workers' object_info) for `/api/v1`, kept apart from the
 * routes so they stay small. The model check (a prompt needing a model file no known worker has is
 * refused before queueing) is part of the one prompt check, src/gateway/prompt-check.ts.
 */
import { convertWorkflow } from '../comfy/workflow-convert/index.js';
import { isUiWorkflow } from '../comfy/workflow-convert/graph.js';
import type { ObjectInfo } from '../comfy/protocol.js';
import { getCurrentEnv } from '../dispatch/env-snapshots.js';
import { AppError } from '../errors.js';
import type { KnownWorkers } from '../dispatch/known-models.js';
import type { BlobStore } from '../store/types.js';

export interface WorkflowPromptDeps {
  store: BlobStore;
  workers: KnownWorkers | null;
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * An API prompt from either format ComfyUI saves: a UI-format workflow is converted with the
 * current worker environment's object_info; an API prompt (bare or as `{prompt: …}`) is returned
 * as it is, to be validated by the caller. Conversion problems are `INVALID_WORKFLOW` naming the
 * node; a UI workflow while no worker ever described its ComfyUI is `CONFLICT`.
 */
export async function toApiPrompt(
  workflow: unknown,
  deps: WorkflowPromptDeps,
): Promise<{ prompt: unknown; format: 'ui' | 'api' }> {
  if (!isUiWorkflow(workflow)) {
    const prompt = isObject(workflow) && isObject(workflow.prompt) ? workflow.prompt : workflow;
    return { prompt, format: 'api' };
  }
  const env = await getCurrentEnv(deps.store);
  if (!env)
    throw new AppError(
      'CONFLICT',
      'No GPU worker has described its ComfyUI yet, so the widget values of a UI-format workflow cannot be named. Connect a worker, or send the API format (ComfyUI: Export (API)).',
    );
  const result = convertWorkflow(workflow, env.snapshot.objectInfo as ObjectInfo);
  if (!result.ok)
    throw new AppError('INVALID_WORKFLOW', result.error.message, {
      details: { node_id: result.error.node_id, class_type: result.error.class_type },
    });
  return { prompt: result.prompt, format: 'ui' };
}

/**
 * `/api/v1/jobs`' body with a UI-format `prompt` replaced by its API prompt; the workflow goes to
 * `metadata.extra_data.extra_pnginfo.workflow`, where the frontend puts it (ComfyUI embeds it in
 * the outputs, and the dashboard reads the workflow's name there). Other bodies pass unchanged.
 */
export async function jobBodyWithApiPrompt(body: unknown, deps: WorkflowPromptDeps): Promise<unknown> {
  if (!isObject(body) || !isUiWorkflow(body.prompt)) return body;
  const { prompt } = await toApiPrompt(body.prompt, deps);
  const metadata = isObject(body.metadata) ? body.metadata : {};
  const extra = isObject(metadata.extra_data) ? metadata.extra_data : {};
  const pnginfo = isObject(extra.extra_pnginfo) ? extra.extra_pnginfo : {};
  return {
    ...body,
    prompt,
    metadata: { ...metadata, extra_data: { ...extra, extra_pnginfo: { ...pnginfo, workflow: body.prompt } } },
  };
}
