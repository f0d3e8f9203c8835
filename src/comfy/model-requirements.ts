/**
 * Model requirements: which model files (folder + name, per loader node) an API prompt needs, and
 * ComfyUI's own refusal when no worker has one. One function serves the submit check (gateway
 * `/prompt` and `/api/v1/jobs`), `doctor`'s template check and the scheduler's model affinity
 * (`Job.models`), so all three agree on what a prompt needs.
 *
 * Folders come from object_info where it is known: a loader's COMBO input lists the files of one
 * model folder (see model-folders.ts for how a folder is recognised).
 */
import {
  comboOptions,
  isLink,
  outputsFailedValidation,
  type ComfyPromptErrorBody,
  type NodeError,
  type ObjectInfo,
} from './protocol.js';
import { extractModelRefs, type ModelRef } from './prompt-tools.js';
import { pyStr } from './python-format.js';
import type { ComfyPrompt } from '../store/types.js';

export type ModelRequirement = ModelRef;

/** Every model file the prompt's loader nodes load: one entry per node input, in prompt order. */
export function modelRequirements(prompt: ComfyPrompt, objectInfo?: ObjectInfo): ModelRequirement[] {
  return extractModelRefs(prompt, objectInfo);
}

/** The unique `<folder>/<name>` paths of {@link modelRequirements} (the form `Job.models` uses). */
export function requiredModelPaths(prompt: ComfyPrompt, objectInfo?: ObjectInfo): string[] {
  return [...new Set(modelRequirements(prompt, objectInfo).map((r) => r.path))];
}

/** What one worker holds: its model folders' files and its object_info (for loader combos). */
export interface ModelHolder {
  models: Record<string, readonly string[]>;
  objectInfo?: ObjectInfo;
}

function holds(h: ModelHolder, r: ModelRequirement): boolean {
  if (h.models[r.folder]?.includes(r.name)) return true;
  const def = h.objectInfo?.[r.classType];
  const spec = def?.input.required?.[r.input] ?? def?.input.optional?.[r.input];
  return comboOptions(spec)?.includes(r.name) ?? false;
}

/** The node ids the outputs depend on (ComfyUI validates only those). */
function reachable(prompt: ComfyPrompt, outputs: readonly string[]): Set<string> {
  const seen = new Set<string>();
  const stack = [...outputs];
  while (stack.length > 0) {
    const id = stack.pop()!;
    if (seen.has(id) || !Object.hasOwn(prompt, id)) continue;
    seen.add(id);
    for (const v of Object.values(prompt[id]!.inputs ?? {})) if (isLink(v)) stack.push(v[0]);
  }
  return seen;
}

/**
 * ComfyUI's 400 answer for a prompt needing a model file no worker has: `value_not_in_list` on
 * the loader's input, naming the file, with the union of the workers' files as the list (as
 * ComfyUI's own validation would answer on a worker lacking it). Null when every file is held by
 * some worker, or when `holders` is empty (nothing is known yet: the prompt is accepted as before).
 * `outputs` limits the check to the nodes those outputs run.
 */
export function missingModelsError(
  prompt: ComfyPrompt,
  holders: readonly ModelHolder[],
  opts: { objectInfo?: ObjectInfo; outputs?: readonly string[] } = {},
): ComfyPromptErrorBody | null {
  if (holders.length === 0) return null;
  const wanted = opts.outputs ? reachable(prompt, opts.outputs) : null;
  const nodeErrors: Record<string, NodeError> = {};
  for (const r of modelRequirements(prompt, opts.objectInfo)) {
    if (wanted && !wanted.has(r.nodeId)) continue;
    if (holders.some((h) => holds(h, r))) continue;
    const known = [...new Set(holders.flatMap((h) => h.models[r.folder] ?? []))].sort();
    const big = known.length > 20;
    const entry = (nodeErrors[r.nodeId] ??= { errors: [], dependent_outputs: [], class_type: r.classType });
    entry.errors.push({
      type: 'value_not_in_list',
      message: 'Value not in list',
      details: `${r.input}: '${r.name}' not in ${big ? `(list of length ${known.length})` : pyStr(known)}`,
      extra_info: { input_name: r.input, input_config: big ? null : [known, {}], received_value: r.name },
    });
  }
  if (Object.keys(nodeErrors).length === 0) return null;
  if (opts.outputs) for (const e of Object.values(nodeErrors)) e.dependent_outputs = [...opts.outputs];
  // ComfyUI's `details` lists only the failing outputs' own errors ("message: details" per line);
  // a loader feeding an output is upstream, so usually it is empty, as ComfyUI's is.
  const own = Object.entries(nodeErrors)
    .filter(([id]) => !opts.outputs || opts.outputs.includes(id))
    .flatMap(([, e]) => e.errors);
  return outputsFailedValidation(own, nodeErrors);
}
