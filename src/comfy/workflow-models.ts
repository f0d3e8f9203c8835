/**
 * The model files a saved workflow needs, as `<folder>/<name>` paths (the form `Job.models` and a
 * worker's env snapshot use), for either format ComfyUI saves:
 *
 * - API format (`{"<id>": {class_type, inputs}}`, or `{prompt: …}` around it): the loader inputs
 *   {@link extractModels} finds.
 * - UI format (`{nodes: [...], definitions: {subgraphs: [...]}}`): the frontend writes each loader's
 *   files into `properties.models` (`{name, directory}`), which is what its own "missing models"
 *   dialog reads; loaders without that list are read from their widget values when every file input
 *   of the loader reads one folder (so no object_info is needed to know the widget order).
 *
 * Muted and bypassed nodes still count: a participant may switch them on.
 */
import { LOADER_INPUT_FOLDERS, NON_FILE_VALUES, looksLikeModelFile } from './model-folders.js';
import { extractModels } from './prompt-tools.js';
import type { ComfyPrompt } from '../store/types.js';

interface UiNode {
  type?: unknown;
  widgets_values?: unknown;
  properties?: { models?: unknown };
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

function uiNodes(workflow: Record<string, unknown>): UiNode[] {
  const nodes: UiNode[] = [];
  const add = (list: unknown) => {
    if (Array.isArray(list)) for (const n of list) if (isObject(n)) nodes.push(n as UiNode);
  };
  add(workflow.nodes);
  const defs = workflow.definitions;
  if (isObject(defs) && Array.isArray(defs.subgraphs)) {
    for (const sg of defs.subgraphs) if (isObject(sg)) add(sg.nodes);
  }
  return nodes;
}

function modelsOfUiNode(node: UiNode, out: Set<string>): void {
  const declared = node.properties?.models;
  const named = new Set<string>();
  if (Array.isArray(declared)) {
    for (const m of declared) {
      if (!isObject(m) || typeof m.name !== 'string' || typeof m.directory !== 'string') continue;
      out.add(`${m.directory}/${m.name}`);
      named.add(m.name);
    }
  }
  const folders = typeof node.type === 'string' ? LOADER_INPUT_FOLDERS[node.type] : undefined;
  if (!folders || !Array.isArray(node.widgets_values)) return;
  const distinct = new Set(Object.values(folders));
  if (distinct.size !== 1) return;
  const [folder] = distinct;
  for (const v of node.widgets_values) {
    if (typeof v !== 'string' || NON_FILE_VALUES.has(v) || named.has(v) || !looksLikeModelFile(v)) continue;
    out.add(`${folder}/${v}`);
  }
}

function isApiPrompt(v: Record<string, unknown>): boolean {
  const values = Object.values(v);
  return values.length > 0 && values.every((n) => isObject(n) && typeof n.class_type === 'string');
}

/** Unique `<folder>/<name>` model paths a saved workflow (UI or API format) loads, sorted. */
export function modelsOfWorkflow(workflow: unknown): string[] {
  if (!isObject(workflow)) return [];
  const out = new Set<string>();
  if (Array.isArray(workflow.nodes)) {
    for (const node of uiNodes(workflow)) modelsOfUiNode(node, out);
  } else {
    const prompt = isObject(workflow.prompt) ? workflow.prompt : workflow;
    if (isApiPrompt(prompt)) for (const p of extractModels(prompt as ComfyPrompt)) out.add(p);
  }
  return [...out].sort();
}

/** The paths of `needed` that a worker's model lists (folder → file names) do not hold. */
export function missingModels(
  needed: readonly string[],
  models: Record<string, readonly string[]>,
): string[] {
  return needed.filter((path) => {
    const slash = path.indexOf('/');
    const folder = path.slice(0, slash);
    const name = path.slice(slash + 1);
    return !(models[folder] ?? []).includes(name);
  });
}
