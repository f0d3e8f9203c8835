/**
 * What a saved workflow (a template) needs on one worker, for doctor and the per-template model
 * view: with the worker's object_info, the model files of the prompt it converts to (the same
 * requirement sets as the submit check and the scheduler); without it, every file its loaders
 * name. `optional` are files only muted or bypassed nodes load (a participant may switch them on).
 * A workflow the worker cannot run has `error` (the converter's message, naming the node).
 */
import { requiredModelPaths } from './model-requirements.js';
import type { ObjectInfo } from './protocol.js';
import { convertWorkflow, isUiWorkflow } from './workflow-convert/index.js';
import { modelsOfWorkflow } from './workflow-models.js';
import type { ComfyPrompt } from '../store/types.js';

export interface WorkflowModelNeeds {
  needed: string[];
  optional: string[];
  error?: string;
}

export function workflowModelNeeds(workflow: unknown, objectInfo: ObjectInfo): WorkflowModelNeeds {
  const all = modelsOfWorkflow(workflow);
  if (Object.keys(objectInfo).length === 0) return { needed: all, optional: [] };
  let prompt: unknown = workflow;
  if (isUiWorkflow(workflow)) {
    const r = convertWorkflow(workflow, objectInfo);
    if (!r.ok) return { needed: all, optional: [], error: r.error.message };
    prompt = r.prompt;
  } else if (typeof workflow === 'object' && workflow !== null && 'prompt' in workflow) {
    prompt = (workflow as { prompt: unknown }).prompt;
  }
  if (typeof prompt !== 'object' || prompt === null) return { needed: [], optional: all };
  const needed = requiredModelPaths(prompt as ComfyPrompt, objectInfo).sort();
  return { needed, optional: all.filter((p) => !needed.includes(p)) };
}
