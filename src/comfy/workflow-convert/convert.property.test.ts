/**
 * Property tests: random UI graphs over the real node types of ComfyUI 0.3.64 (with Reroutes,
 * PrimitiveNodes, muted and bypassed nodes, subgraph wrapping) convert to a prompt that ComfyUI's
 * validation accepts, or to a clear error naming the node; damaged graphs never make the
 * converter throw.
 */
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { COMFY_FIXTURES } from '../../../test/support/fixtures.js';
import type { InputSpec, NodeDef, ObjectInfo } from '../protocol.js';
import { isLink } from '../protocol.js';
import { validatePrompt } from '../validate-prompt.js';
import { convertWorkflow } from './convert.js';
import { defaultWidgetValue, widgetSlots } from './widgets.js';

const objectInfo = JSON.parse(readFileSync(`${COMFY_FIXTURES}/object_info.json`, 'utf8')) as ObjectInfo;
const WIDGET_TYPES = new Set(['INT', 'FLOAT', 'STRING', 'BOOLEAN', 'COMBO']);

const isWidgetSpec = (s: InputSpec) =>
  Array.isArray(s[0]) || (typeof s[0] === 'string' && WIDGET_TYPES.has(s[0]) && s[1]?.forceInput !== true);

/** Node types a random graph may use: no empty combo (no models here), no API nodes, no `*`. */
const POOL = Object.entries(objectInfo)
  .filter(([, d]) => {
    if (d.output_node || d.api_node || (d.category ?? '').includes('api node')) return false;
    return Object.values(d.input.required ?? {}).every((s) => {
      if (Array.isArray(s[0])) return s[0].length > 0;
      if (s[0] === 'COMBO') return (s[1]?.options?.length ?? 0) > 0;
      return s[0] !== '*';
    });
  })
  .map(([name]) => name);
/** Types that need no link: a graph starts with one, so it always has something to preview. */
const SOURCES = POOL.filter((t) => {
  const d = objectInfo[t]!;
  return d.output.length > 0 && Object.values(d.input.required ?? {}).every((s) => isWidgetSpec(s));
});

type Slot = { name: string; type: string; link: number | null; widget?: { name: string } };
type UiNode = {
  id: number;
  type: string;
  mode: number;
  inputs: Slot[];
  outputs: { name: string; type: string; links: number[] }[];
  widgets_values?: unknown[];
  properties: Record<string, unknown>;
};

/** Builds a graph from a stream of random choices (so fast-check can shrink it). */
function buildGraph(choices: number[], opts: { modes: boolean }): { nodes: UiNode[]; links: unknown[][] } {
  let c = 0;
  const pick = (n: number) => (n <= 1 ? 0 : choices[c++ % choices.length]! % n);
  const nodes: UiNode[] = [];
  const links: unknown[][] = [];
  let nextId = 1;
  let nextLink = 1;
  const link = (from: UiNode, slot: number, to: UiNode, toSlot: number, type: string) => {
    const id = nextLink++;
    links.push([id, from.id, slot, to.id, toSlot, type]);
    from.outputs[slot]!.links.push(id);
    to.inputs[toSlot]!.link = id;
  };
  /** A producer of `type`, maybe behind a Reroute. */
  const connect = (type: string, to: UiNode, toSlot: number): boolean => {
    const producers = nodes.flatMap((n) =>
      n.type === 'Reroute' || n.type === 'PrimitiveNode'
        ? []
        : n.outputs.map((o, i) => ({ n, i, o })).filter((x) => x.o.type === type),
    );
    if (producers.length === 0) return false;
    const p = producers[pick(producers.length)]!;
    if (pick(5) === 0) {
      const reroute: UiNode = {
        id: nextId++,
        type: 'Reroute',
        mode: 0,
        inputs: [{ name: '', type: '*', link: null }],
        outputs: [{ name: '', type, links: [] }],
        properties: {},
      };
      nodes.push(reroute);
      link(p.n, p.i, reroute, 0, type);
      link(reroute, 0, to, toSlot, type);
    } else link(p.n, p.i, to, toSlot, type);
    return true;
  };
  const count = 2 + pick(10);
  for (let k = 0; k < count; k++) {
    const type = k === 0 ? SOURCES[pick(SOURCES.length)]! : POOL[pick(POOL.length)]!;
    const def = objectInfo[type] as NodeDef;
    const node: UiNode = {
      id: nextId++,
      type,
      mode: opts.modes && k > 0 ? [0, 0, 0, 2, 4][pick(5)]! : 0,
      inputs: [],
      outputs: def.output.map((t, i) => ({
        name: def.output_name?.[i] ?? String(t),
        type: Array.isArray(t) ? 'COMBO' : t,
        links: [],
      })),
      properties: {},
    };
    const required = Object.entries(def.input.required ?? {});
    const linkInputs = required.filter(([, s]) => !isWidgetSpec(s));
    node.inputs = linkInputs.map(([name, s]) => ({ name, type: String(s[0]), link: null }));
    const values: unknown[] = widgetSlots(def).map((w) =>
      w.spec ? defaultWidgetValue(w.spec) : w.name === 'control_after_generate' ? 'fixed' : 'image',
    );
    node.widgets_values = values;
    // Every required link input is fed: a type nobody produces yet rules the node out.
    const produced = new Set(
      nodes
        .filter((n) => n.type !== 'Reroute' && n.type !== 'PrimitiveNode')
        .flatMap((n) => n.outputs.map((o) => o.type)),
    );
    if (!linkInputs.every(([, s]) => produced.has(String(s[0])))) continue;
    linkInputs.forEach(([, s], i) => connect(String(s[0]), node, i));
    nodes.push(node);
    // Now and then an INT widget is fed by a PrimitiveNode holding another value.
    const intWidget = widgetSlots(def).findIndex((w) => w.spec?.[0] === 'INT');
    if (intWidget >= 0 && pick(3) === 0) {
      const w = widgetSlots(def)[intWidget]!;
      const value = defaultWidgetValue(w.spec!);
      const prim: UiNode = {
        id: nextId++,
        type: 'PrimitiveNode',
        mode: 0,
        inputs: [],
        outputs: [{ name: 'INT', type: 'INT', links: [] }],
        widgets_values: [value, 'fixed'],
        properties: {},
      };
      nodes.push(prim);
      node.inputs.push({ name: w.name, type: 'INT', link: null, widget: { name: w.name } });
      link(prim, 0, node, node.inputs.length - 1, 'INT');
    }
  }
  const sinks = nodes.filter(
    (n) => n.type !== 'Reroute' && n.type !== 'PrimitiveNode' && n.outputs.length > 0,
  );
  const sink = sinks[sinks.length - 1];
  if (sink) {
    const preview: UiNode = {
      id: nextId++,
      type: 'PreviewAny',
      mode: 0,
      inputs: [{ name: 'source', type: '*', link: null }],
      outputs: [],
      properties: {},
    };
    nodes.push(preview);
    link(sink, 0, preview, 0, sink.outputs[0]!.type);
  }
  return { nodes, links };
}

const workflowOf = (g: { nodes: UiNode[]; links: unknown[][] }) => ({
  last_node_id: g.nodes.length,
  nodes: g.nodes,
  links: g.links,
  version: 0.4,
});

/** The same graph inside one subgraph instance (its nodes become `<instance>:<id>`). */
function wrapInSubgraph(g: { nodes: UiNode[]; links: unknown[][] }) {
  const links = g.links.map(([id, o, os, t, ts, type]) => ({
    id,
    origin_id: o,
    origin_slot: os,
    target_id: t,
    target_slot: ts,
    type,
  }));
  const def = { id: 'sub-1', name: 'Random', nodes: g.nodes, links, inputs: [], outputs: [] };
  return {
    version: 1,
    state: { lastNodeId: 1000 },
    nodes: [{ id: 1000, type: 'sub-1', mode: 0, inputs: [], outputs: [], properties: {} }],
    links: [],
    definitions: { subgraphs: [def] },
  };
}

const choices = fc.array(fc.nat(), { minLength: 20, maxLength: 120 });

describe('random UI graphs', () => {
  it('with every node active, convert to a prompt ComfyUI validation accepts', () => {
    fc.assert(
      fc.property(choices, fc.boolean(), (ch, wrap) => {
        const g = buildGraph(ch, { modes: false });
        const r = convertWorkflow(wrap ? wrapInSubgraph(g) : workflowOf(g), objectInfo);
        if (!r.ok) throw new Error(r.error.message);
        const real = g.nodes.filter((n) => n.type !== 'Reroute' && n.type !== 'PrimitiveNode');
        expect(Object.keys(r.prompt).length).toBe(real.length);
        const v = validatePrompt(r.prompt, objectInfo);
        if (!v.ok)
          throw new Error(
            `${JSON.stringify(v.body).slice(0, 1500)}\n${JSON.stringify(r.prompt).slice(0, 3000)}`,
          );
      }),
      { numRuns: 150 },
    );
  });

  it('with muted and bypassed nodes, give a prompt without them and without dangling links', () => {
    fc.assert(
      fc.property(choices, fc.boolean(), (ch, wrap) => {
        const g = buildGraph(ch, { modes: true });
        const r = convertWorkflow(wrap ? wrapInSubgraph(g) : workflowOf(g), objectInfo);
        if (!r.ok) throw new Error(r.error.message);
        const kept = new Set(
          g.nodes
            .filter((n) => n.mode === 0 && n.type !== 'Reroute' && n.type !== 'PrimitiveNode')
            .map((n) => (wrap ? `1000:${n.id}` : String(n.id))),
        );
        expect(new Set(Object.keys(r.prompt))).toEqual(kept);
        for (const node of Object.values(r.prompt)) {
          for (const v of Object.values(node.inputs)) if (isLink(v)) expect(kept.has(v[0])).toBe(true);
        }
      }),
      { numRuns: 150 },
    );
  });

  it('damaged graphs give an error naming a node of the graph, never a throw', () => {
    fc.assert(
      fc.property(choices, fc.nat(), fc.constantFrom('link', 'type', 'slot', 'node'), (ch, n, damage) => {
        const g = buildGraph(ch, { modes: true });
        if (g.links.length === 0) return;
        const l = g.links[n % g.links.length]!;
        if (damage === 'link') g.links.splice(n % g.links.length, 1);
        if (damage === 'type') {
          const node = g.nodes[n % g.nodes.length]!;
          if (node.type !== 'Reroute' && node.type !== 'PrimitiveNode') node.type = 'NoSuchNode';
        }
        if (damage === 'slot') l[4] = 99;
        if (damage === 'node') l[1] = 9999;
        const r = convertWorkflow(workflowOf(g), objectInfo);
        if (r.ok) return;
        expect(r.error.message.length).toBeGreaterThan(10);
        if (r.error.node_id !== null) {
          const ids = new Set(g.nodes.map((x) => String(x.id)));
          expect(ids.has(r.error.node_id.split(':').at(-1)!)).toBe(true);
          expect(r.error.message).toContain(`node ${r.error.node_id}`);
        }
      }),
      { numRuns: 200 },
    );
  });
});
