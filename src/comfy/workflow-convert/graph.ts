/**
 * The UI-format workflow (schema 0.4 and 1) read into plain maps: graphs (the root and each
 * subgraph definition) with their nodes and links by id. Nothing here knows object_info.
 */

/** Ids litegraph gives a subgraph's input and output pseudo-nodes. */
export const SUBGRAPH_INPUT_ID = -10;
export const SUBGRAPH_OUTPUT_ID = -20;

/** litegraph's LGraphEventMode values that take a node out of the prompt. */
export const MODE_NEVER = 2;
export const MODE_BYPASS = 4;

export interface UiSlot {
  name: string;
  type: string;
  link: number | null;
  widget?: { name: string };
}

export interface UiNode {
  id: number | string;
  type: string;
  mode: number;
  title?: string;
  inputs: UiSlot[];
  outputs: { name: string; type: string; links: number[] }[];
  widgets_values?: unknown;
  properties: Record<string, unknown>;
}

export interface UiLink {
  id: number;
  origin_id: number | string;
  origin_slot: number;
  target_id: number | string;
  target_slot: number;
  type: string;
}

export interface SubgraphIo {
  name: string;
  type: string;
  linkIds: number[];
}

export interface Graph {
  /** `root` or the subgraph definition's id. */
  key: string;
  name: string;
  nodes: Map<string, UiNode>;
  links: Map<number, UiLink>;
  inputs: SubgraphIo[];
  outputs: SubgraphIo[];
}

export interface Workflow {
  root: Graph;
  subgraphs: Map<string, Graph>;
}

/** A problem with the workflow, naming the node (its execution id) where there is one. */
export class ConvertError extends Error {
  constructor(
    message: string,
    readonly nodeId: string | null = null,
    readonly classType: string | null = null,
  ) {
    super(message);
    this.name = 'ConvertError';
  }
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** Litegraph slot types are strings; a few old graphs store combo types as arrays. */
function typeName(v: unknown): string {
  if (typeof v === 'string') return v;
  if (Array.isArray(v)) return 'COMBO';
  if (v === 0 || v === undefined || v === null) return '*';
  return String(v);
}

const toNum = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);

function readLink(raw: unknown, where: string): UiLink {
  // Schema 0.4 root graphs: [id, origin_id, origin_slot, target_id, target_slot, type].
  if (Array.isArray(raw)) {
    const [id, oid, os, tid, ts, type] = raw as unknown[];
    if (toNum(id) === null || toNum(os) === null || toNum(ts) === null)
      throw new ConvertError(`${where}: a link is malformed (${JSON.stringify(raw).slice(0, 80)}).`);
    return {
      id: id as number,
      origin_id: oid as number,
      origin_slot: os as number,
      target_id: tid as number,
      target_slot: ts as number,
      type: typeName(type),
    };
  }
  if (
    isObject(raw) &&
    toNum(raw.id) !== null &&
    toNum(raw.origin_slot) !== null &&
    toNum(raw.target_slot) !== null
  )
    return {
      id: raw.id as number,
      origin_id: raw.origin_id as number,
      origin_slot: raw.origin_slot as number,
      target_id: raw.target_id as number,
      target_slot: raw.target_slot as number,
      type: typeName(raw.type),
    };
  throw new ConvertError(`${where}: a link is malformed (${JSON.stringify(raw)?.slice(0, 80)}).`);
}

function readNode(raw: unknown, index: number, where: string): UiNode {
  if (!isObject(raw)) throw new ConvertError(`${where}: node #${index} is not an object.`);
  const id = raw.id;
  if (typeof id !== 'number' && typeof id !== 'string')
    throw new ConvertError(`${where}: node #${index} has no id.`);
  if (typeof raw.type !== 'string' || raw.type === '')
    throw new ConvertError(`${where}: node ${id} has no type.`, String(id));
  const inputs: UiSlot[] = [];
  for (const s of Array.isArray(raw.inputs) ? raw.inputs : []) {
    if (!isObject(s))
      throw new ConvertError(`${where}: node ${id} has a malformed input.`, String(id), raw.type);
    const link = toNum(s.link);
    inputs.push({
      name: typeof s.name === 'string' ? s.name : '',
      type: typeName(s.type),
      link,
      ...(isObject(s.widget) && typeof s.widget.name === 'string' ? { widget: { name: s.widget.name } } : {}),
    });
  }
  const outputs = (Array.isArray(raw.outputs) ? raw.outputs : []).map((o) => ({
    name: isObject(o) && typeof o.name === 'string' ? o.name : '',
    type: typeName(isObject(o) ? o.type : undefined),
    links: isObject(o) && Array.isArray(o.links) ? o.links.filter((l): l is number => toNum(l) !== null) : [],
  }));
  return {
    id,
    type: raw.type,
    mode: toNum(raw.mode) ?? 0,
    ...(typeof raw.title === 'string' ? { title: raw.title } : {}),
    inputs,
    outputs,
    widgets_values: raw.widgets_values,
    properties: isObject(raw.properties) ? raw.properties : {},
  };
}

function readIo(raw: unknown): SubgraphIo[] {
  if (!Array.isArray(raw)) return [];
  return raw.map((s) => ({
    name: isObject(s) && typeof s.name === 'string' ? s.name : '',
    type: typeName(isObject(s) ? s.type : undefined),
    linkIds:
      isObject(s) && Array.isArray(s.linkIds) ? s.linkIds.filter((l): l is number => toNum(l) !== null) : [],
  }));
}

function readGraph(raw: Record<string, unknown>, key: string, name: string): Graph {
  const where = key === 'root' ? 'The workflow' : `Subgraph "${name}"`;
  const nodes = new Map<string, UiNode>();
  const list = Array.isArray(raw.nodes) ? raw.nodes : [];
  list.forEach((n, i) => {
    const node = readNode(n, i, where);
    if (nodes.has(String(node.id)))
      throw new ConvertError(`${where}: two nodes have the id ${node.id}.`, String(node.id), node.type);
    nodes.set(String(node.id), node);
  });
  const links = new Map<number, UiLink>();
  // Schema 0.4 graphs may keep `links` as an object keyed by id.
  const rawLinks = Array.isArray(raw.links) ? raw.links : isObject(raw.links) ? Object.values(raw.links) : [];
  for (const l of rawLinks) {
    if (l === null) continue;
    const link = readLink(l, where);
    links.set(link.id, link);
  }
  return { key, name, nodes, links, inputs: readIo(raw.inputs), outputs: readIo(raw.outputs) };
}

/** Whether a parsed JSON value is a UI-format workflow (as opposed to an API prompt). */
export function isUiWorkflow(v: unknown): v is Record<string, unknown> {
  return isObject(v) && Array.isArray(v.nodes);
}

/**
 * `deduplicateSubgraphNodeIds` (frontend 1.45, on load): a node inside a subgraph definition whose
 * id is already used (by a root node or an earlier definition's node) gets the next free id after
 * the graph's last node id, and the definition's links and the instances' `proxyWidgets` follow.
 * The prompt's `<instance>:<inner>` ids use the new ids, so ours must too.
 */
function deduplicateSubgraphNodeIds(raw: Record<string, unknown>, defs: Record<string, unknown>[]): void {
  const used = new Set<number>();
  const rootNodes = Array.isArray(raw.nodes) ? raw.nodes.filter(isObject) : [];
  for (const n of rootNodes) if (typeof n.id === 'number') used.add(n.id);
  const state = isObject(raw.state) ? raw.state : {};
  let last = raw.version === 0.4 ? (toNum(raw.last_node_id) ?? 0) : Math.max(0, toNum(state.lastNodeId) ?? 0);
  const remaps = new Map<string, Map<number, number>>();
  for (const def of defs) {
    const remap = new Map<number, number>();
    for (const node of Array.isArray(def.nodes) ? def.nodes.filter(isObject) : []) {
      if (typeof node.id !== 'number') continue;
      if (used.has(node.id)) {
        do last += 1;
        while (used.has(last));
        remap.set(node.id, last);
        node.id = last;
        used.add(last);
      } else {
        used.add(node.id);
        if (node.id > last) last = node.id;
      }
    }
    if (remap.size === 0) continue;
    remaps.set(def.id as string, remap);
    for (const l of Array.isArray(def.links) ? def.links : []) {
      if (!isObject(l)) continue;
      const o = remap.get(l.origin_id as number);
      if (o !== undefined) l.origin_id = o;
      const t = remap.get(l.target_id as number);
      if (t !== undefined) l.target_id = t;
    }
  }
  const patchProxies = (nodes: unknown[]) => {
    for (const node of nodes) {
      if (!isObject(node) || typeof node.type !== 'string') continue;
      const remap = remaps.get(node.type);
      const proxies = isObject(node.properties) ? node.properties.proxyWidgets : undefined;
      if (!remap || !Array.isArray(proxies)) continue;
      for (const entry of proxies) {
        if (!Array.isArray(entry)) continue;
        const id = remap.get(Number(entry[0]));
        if (id !== undefined) entry[0] = String(id);
      }
    }
  };
  for (const def of defs) patchProxies(Array.isArray(def.nodes) ? def.nodes : []);
  patchProxies(rootNodes);
}

export function readWorkflow(input: unknown): Workflow {
  if (!isUiWorkflow(input))
    throw new ConvertError('The workflow is not a ComfyUI UI-format workflow (no "nodes" list).');
  // Cloned: de-duplicating ids rewrites nodes and links, and the caller's object stays as it was.
  const raw = structuredClone(input);
  const defs =
    isObject(raw.definitions) && Array.isArray(raw.definitions.subgraphs) ? raw.definitions.subgraphs : [];
  for (const d of defs) {
    if (!isObject(d) || typeof d.id !== 'string')
      throw new ConvertError('The workflow has a subgraph definition without an id.');
  }
  deduplicateSubgraphNodeIds(raw, defs as Record<string, unknown>[]);
  const subgraphs = new Map<string, Graph>();
  for (const d of defs as Record<string, unknown>[]) {
    const name = typeof d.name === 'string' ? d.name : (d.id as string);
    subgraphs.set(d.id as string, readGraph(d, d.id as string, name));
  }
  return { root: readGraph(raw, 'root', 'root'), subgraphs };
}
