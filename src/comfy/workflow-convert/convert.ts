/**
 * UI-format workflow → API-format prompt, as the ComfyUI frontend's `graphToPrompt`
 * (src/utils/executionUtil.ts, v1.45) does it: subgraph instances are flattened into nodes with
 * `<instance>:<inner>` ids (`ExecutableNodeDTO`), muted nodes (mode 2) produce nothing, bypassed
 * nodes (mode 4) pass a matching input through, Reroute nodes pass their input through, a legacy
 * PrimitiveNode writes its value into the widgets it feeds (`applyToGraph`), and each remaining
 * node's widget values are named through object_info (dynamic-prompt text resolved, as the
 * frontend's widgets do when queueing). Inputs linked to nodes that are not in the prompt are
 * dropped, as the frontend does.
 *
 * Known differences: legacy group nodes (`workflow>…`) are refused with a message asking to convert
 * them to a subgraph; frontend-only nodes of custom extensions are unknown node types; a bypassed
 * node without inputs passes nothing (the frontend throws); `_meta.title` is the node's title or
 * the object_info display name (the frontend translates the latter).
 */
import type { NodeDef, ObjectInfo } from '../protocol.js';
import {
  ConvertError,
  type Graph,
  MODE_BYPASS,
  MODE_NEVER,
  SUBGRAPH_INPUT_ID,
  type UiNode,
  type Workflow,
  readWorkflow,
} from './graph.js';
import { processDynamicPrompt } from './dynamic-prompts.js';
import { defaultWidgetValue, widgetSlots } from './widgets.js';

export type ApiNode = { inputs: Record<string, unknown>; class_type: string; _meta: { title: string } };
export type ApiPromptOut = Record<string, ApiNode>;

/** Frontend-only nodes: they never reach the prompt. */
const VIRTUAL_TYPES = new Set(['Reroute', 'PrimitiveNode', 'Note', 'MarkdownNote']);

type Resolved = { link: [string, number] } | { value: unknown };

interface Dto {
  id: string;
  node: UiNode;
  graph: Graph;
  path: string[];
  /** The subgraph instance (and its DTO id) this node sits in. */
  instance: Dto | null;
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** litegraph's `LiteGraph.isValidConnection`. */
function validConnection(a: string, b: string): boolean {
  const x = a === '' || a === '*' ? '' : a;
  const y = b === '' || b === '*' ? '' : b;
  if (!x || !y || x === y) return true;
  const xs = x.toLowerCase().split(',');
  const ys = y.toLowerCase().split(',');
  return xs.some((t) => ys.includes(t));
}

/** `obj[key] = value` that also works for `__proto__` (ids and names come from the workflow). */
function setOwn(obj: object, key: string, value: unknown): void {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

/** Array widget values are boxed so ComfyUI does not read them as links. */
const box = (v: unknown): unknown => (Array.isArray(v) ? { __value__: v } : v);

class Converter {
  readonly dtos = new Map<string, Dto>();
  /** PrimitiveNode values written into the widgets they feed: `<graph>|<node>` → name → value. */
  readonly primitiveValues = new Map<string, Map<string, unknown>>();

  constructor(
    readonly wf: Workflow,
    readonly objectInfo: ObjectInfo,
    readonly random: () => number,
  ) {}

  subgraphOf(node: UiNode): Graph | undefined {
    return this.wf.subgraphs.get(node.type);
  }

  isVirtual(node: UiNode): boolean {
    return VIRTUAL_TYPES.has(node.type) || this.wf.subgraphs.has(node.type);
  }

  error(dto: Dto | null, message: string): ConvertError {
    return new ConvertError(message, dto?.id ?? null, dto?.node.type ?? null);
  }

  label(dto: Dto): string {
    const t = dto.node.title ? ` "${dto.node.title}"` : '';
    return `node ${dto.id} (${dto.node.type}${t})`;
  }

  // ---- flattening (ExecutableNodeDTO / SubgraphNode.getInnerNodes) -----------------------------

  addDto(node: UiNode, graph: Graph, path: string[], instance: Dto | null): Dto {
    const dto: Dto = { id: [...path, String(node.id)].join(':'), node, graph, path, instance };
    this.dtos.set(dto.id, dto);
    return dto;
  }

  expand(instance: Dto, seen: Set<string>): void {
    const sub = this.subgraphOf(instance.node)!;
    if (seen.has(sub.key))
      throw this.error(instance, `Subgraph "${sub.name}" contains itself (through ${this.label(instance)}).`);
    const path = [...instance.path, String(instance.node.id)];
    for (const node of sub.nodes.values()) {
      const dto = this.addDto(node, sub, path, instance);
      if (this.subgraphOf(node)) this.expand(dto, new Set([...seen, sub.key]));
    }
  }

  flatten(): void {
    for (const node of this.wf.root.nodes.values()) {
      const dto = this.addDto(node, this.wf.root, [], null);
      if (node.mode === MODE_NEVER || node.mode === MODE_BYPASS) continue;
      if (this.subgraphOf(node)) this.expand(dto, new Set());
    }
  }

  // ---- widgets ----------------------------------------------------------------------------------

  def(node: UiNode): NodeDef | undefined {
    const def = Object.hasOwn(this.objectInfo, node.type) ? this.objectInfo[node.type] : undefined;
    // A custom node's malformed definition (no `input`) is treated like a missing one.
    return def && isObject(def.input) ? def : undefined;
  }

  /** The node's prompt widgets by name, from `widgets_values` (list or name-keyed object). */
  widgetValues(node: UiNode, graph: Graph): Map<string, unknown> {
    const out = new Map<string, unknown>();
    const def = this.def(node);
    if (!def) return out;
    const values = node.widgets_values;
    widgetSlots(def).forEach((slot, i) => {
      if (!slot.inPrompt) return;
      let v: unknown;
      if (Array.isArray(values)) v = values[i];
      else if (isObject(values)) v = values[slot.name];
      // A missing value (older save, newer node) gets the widget's default, as on load.
      out.set(slot.name, v === undefined && slot.spec ? defaultWidgetValue(slot.spec) : v);
    });
    const primitive = this.primitiveValues.get(`${graph.key}|${node.id}`);
    if (primitive) for (const [k, v] of primitive) if (out.has(k)) out.set(k, v);
    return out;
  }

  /** `PrimitiveNode.applyToGraph`: its first widget's value goes into every widget it feeds. */
  applyPrimitives(): void {
    const graphs = [this.wf.root, ...this.wf.subgraphs.values()];
    for (const graph of graphs) {
      for (const node of graph.nodes.values()) {
        if (node.type !== 'PrimitiveNode' || !Array.isArray(node.widgets_values)) continue;
        if (node.widgets_values.length === 0) continue;
        const value = node.widgets_values[0];
        for (const linkId of node.outputs[0]?.links ?? []) {
          const link = graph.links.get(linkId);
          if (!link) continue;
          const target = graph.nodes.get(String(link.target_id));
          const name = target?.inputs[link.target_slot]?.widget?.name;
          if (!target || !name) continue;
          const key = `${graph.key}|${target.id}`;
          if (!this.primitiveValues.has(key)) this.primitiveValues.set(key, new Map());
          this.primitiveValues.get(key)!.set(name, value);
        }
      }
    }
  }

  /**
   * The value of an unlinked subgraph-instance input that feeds a widget inside (the promoted
   * widget): the inner widget's value. The instance's own `widgets_values` only mirror those;
   * frontend 1.45 queues the inner value even when they differ (recorded in
   * flux2_instance_values.frontend.api.json), and so do we.
   */
  instanceWidgetValue(instance: Dto, index: number): { value: unknown } | undefined {
    const sub = this.subgraphOf(instance.node)!;
    const io = sub.inputs[index];
    if (!io) return undefined;
    for (const linkId of io.linkIds) {
      const link = sub.links.get(linkId);
      const target = link ? sub.nodes.get(String(link.target_id)) : undefined;
      const slot = target && link ? target.inputs[link.target_slot] : undefined;
      if (!target || !link || !slot?.widget) continue;
      if (this.subgraphOf(target)) {
        const innerId = [...instance.path, String(instance.node.id), String(target.id)].join(':');
        const innerDto = this.dtos.get(innerId);
        const inner = innerDto ? this.instanceWidgetValue(innerDto, link.target_slot) : undefined;
        if (inner) return inner;
        continue;
      }
      const values = this.widgetValues(target, sub);
      if (values.has(slot.widget.name)) return { value: values.get(slot.widget.name) };
    }
    return undefined;
  }

  // ---- link resolution (ExecutableNodeDTO.resolveInput / resolveOutput) ------------------------

  guard(visited: Set<string>, key: string, dto: Dto, what: string): void {
    if (visited.has(key))
      throw this.error(dto, `Circular reference while resolving ${what} of ${this.label(dto)}.`);
    visited.add(key);
  }

  resolveInput(dto: Dto, slot: number, visited: Set<string>, type?: string): Resolved | undefined {
    this.guard(visited, `${dto.graph.key}:${dto.node.id}[I]${slot}`, dto, `input ${slot}`);
    const input = dto.node.inputs[slot];
    if (!input) throw this.error(dto, `${this.label(dto)} has no input ${slot}.`);
    if (input.link === null) return undefined;
    const link = dto.graph.links.get(input.link);
    if (!link)
      throw this.error(
        dto,
        `${this.label(dto)}: input "${input.name}" uses link ${input.link}, which does not exist.`,
      );

    if (dto.instance && Number(link.origin_id) === SUBGRAPH_INPUT_ID) {
      const instance = dto.instance;
      const outer = instance.node.inputs[link.origin_slot];
      if (!outer)
        throw this.error(
          instance,
          `${this.label(instance)} has no input ${link.origin_slot} for "${input.name}".`,
        );
      if (outer.link === null) return this.instanceWidgetValue(instance, link.origin_slot);
      const outerLink = instance.graph.links.get(outer.link);
      if (!outerLink)
        throw this.error(
          instance,
          `${this.label(instance)}: input "${outer.name}" uses link ${outer.link}, which does not exist.`,
        );
      return this.resolveInput(instance, outerLink.target_slot, visited);
    }

    const origin = dto.graph.nodes.get(String(link.origin_id));
    if (!origin)
      throw this.error(
        dto,
        `${this.label(dto)}: input "${input.name}" is linked to node ${link.origin_id}, which does not exist.`,
      );
    const originDto = this.dtos.get([...dto.path, String(origin.id)].join(':'));
    // Not flattened: inside a muted or bypassed subgraph instance; nothing comes out of it.
    if (!originDto) return undefined;
    return this.resolveOutput(originDto, link.origin_slot, type ?? input.type, visited);
  }

  bypassSlot(dto: Dto, slot: number, type: string): number {
    const inputs = dto.node.inputs;
    const outputType = dto.node.outputs[slot]?.type;
    if (outputType === undefined) return -1;
    if (type === '*' || type === '') return inputs.length > slot ? slot : 0;
    const opposite = inputs[slot];
    if (opposite && validConnection(opposite.type, outputType) && validConnection(opposite.type, type))
      return slot;
    const exact = inputs.findIndex((i) => i.type === type);
    if (exact !== -1) return exact;
    return inputs.findIndex((i) => validConnection(i.type, outputType) && validConnection(i.type, type));
  }

  resolveOutput(dto: Dto, slot: number, type: string, visited: Set<string>): Resolved | undefined {
    this.guard(visited, `${dto.graph.key}:${dto.node.id}[O]${slot}`, dto, `output ${slot}`);
    if (dto.node.mode === MODE_NEVER) return undefined;
    if (dto.node.mode === MODE_BYPASS) {
      const index = this.bypassSlot(dto, slot, type);
      // A bypassed node without inputs passes nothing (the frontend throws SlotIndexError here).
      if (index === -1 || index >= dto.node.inputs.length) return undefined;
      return this.resolveInput(dto, index, visited);
    }
    const sub = this.subgraphOf(dto.node);
    if (sub) {
      const io = sub.outputs[slot];
      if (!io) throw this.error(dto, `${this.label(dto)} has no output ${slot}.`);
      const link = io.linkIds.length > 0 ? sub.links.get(io.linkIds[0]!) : undefined;
      if (!link) return undefined;
      const inner = sub.nodes.get(String(link.origin_id));
      const innerDto = inner && this.dtos.get([...dto.path, String(dto.node.id), String(inner.id)].join(':'));
      if (!innerDto)
        throw this.error(
          dto,
          `${this.label(dto)}: output "${io.name}" of subgraph "${sub.name}" comes from no node inside it.`,
        );
      return this.resolveOutput(innerDto, link.origin_slot, type, visited);
    }
    if (dto.node.type === 'Reroute') {
      const input = dto.node.inputs[slot];
      if (!input || input.link === null) return undefined;
      return this.resolveInput(dto, slot, visited, type);
    }
    if (this.isVirtual(dto.node)) return undefined;
    return { link: [dto.id, slot] };
  }

  // ---- the prompt -------------------------------------------------------------------------------

  nodeToApi(dto: Dto): ApiNode {
    const def = this.def(dto.node);
    if (!def)
      throw this.error(
        dto,
        `${this.label(dto)}: no connected worker's ComfyUI knows the node type "${dto.node.type}" (a custom node that is not installed?).`,
      );
    const inputs: Record<string, unknown> = {};
    // The widgets' serializeValue: dynamic-prompt text is resolved (values that come in through a
    // subgraph input below are not, as in the frontend).
    const dynamic = new Set(
      widgetSlots(def)
        .filter((w) => w.spec?.[1]?.dynamicPrompts === true)
        .map((w) => w.name),
    );
    for (const [name, v] of this.widgetValues(dto.node, dto.graph))
      setOwn(
        inputs,
        name,
        box(dynamic.has(name) && typeof v === 'string' ? processDynamicPrompt(v, this.random) : v),
      );
    dto.node.inputs.forEach((input, i) => {
      const r = this.resolveInput(dto, i, new Set());
      if (!r) return;
      setOwn(inputs, input.name, 'link' in r ? r.link : box(r.value));
    });
    const title = dto.node.title ?? def.display_name ?? dto.node.type;
    return { inputs, class_type: dto.node.type, _meta: { title } };
  }

  run(): ApiPromptOut {
    this.applyPrimitives();
    this.flatten();
    const out: ApiPromptOut = {};
    for (const dto of this.dtos.values()) {
      const { node } = dto;
      if (this.isVirtual(node) || node.mode === MODE_NEVER || node.mode === MODE_BYPASS) continue;
      if (/^workflow[>/]/.test(node.type))
        throw this.error(
          dto,
          `${this.label(dto)} is a legacy group node; open the workflow in ComfyUI and convert it to a subgraph.`,
        );
      setOwn(out, dto.id, this.nodeToApi(dto));
    }
    // Drop links to nodes that are not in the prompt (the frontend does the same).
    for (const node of Object.values(out)) {
      for (const [name, v] of Object.entries(node.inputs)) {
        if (Array.isArray(v) && v.length === 2 && !Object.hasOwn(out, String(v[0]))) delete node.inputs[name];
      }
    }
    return out;
  }
}

export type ConvertResult =
  | { ok: true; prompt: ApiPromptOut }
  | { ok: false; error: { message: string; node_id: string | null; class_type: string | null } };

/**
 * Converts a UI-format workflow to an API-format prompt with the given object_info (the workers'
 * node definitions). Never throws for bad input: a broken workflow gives `ok: false` and a
 * message naming the node.
 */
export function convertWorkflow(
  workflow: unknown,
  objectInfo: ObjectInfo,
  opts: { random?: () => number } = {},
): ConvertResult {
  try {
    return {
      ok: true,
      prompt: new Converter(readWorkflow(workflow), objectInfo, opts.random ?? Math.random).run(),
    };
  } catch (err) {
    if (err instanceof ConvertError)
      return { ok: false, error: { message: err.message, node_id: err.nodeId, class_type: err.classType } };
    // Link resolution recurses through bypassed nodes, Reroutes and subgraph levels.
    if (err instanceof RangeError)
      return {
        ok: false,
        error: {
          message: 'The workflow nests bypassed nodes, Reroutes or subgraphs too deeply to follow.',
          node_id: null,
          class_type: null,
        },
      };
    throw err;
  }
}
