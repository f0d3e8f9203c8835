/**
 * The converter against the real frontend: each UI-format workflow in the shared fixtures (and a
 * small legacy one with a PrimitiveNode, a Reroute, a bypassed and a muted node) converts to the
 * prompt ComfyUI frontend 1.45's own `graphToPrompt` made of it; so do a nested-subgraph workflow in
 * schema 1, the Flux workflow with instance widget values that differ from the inner ones, and
 * dynamic-prompt text with comments (recorded by
 * test/fixtures/workflow-convert/make-references.ts). `_meta.title` is compared only where the
 * workflow sets a title: otherwise the frontend takes it from its locale files.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { COMFY_FIXTURES, WORKFLOW_FIXTURES } from '../../../test/support/fixtures.js';
import type { ObjectInfo } from '../protocol.js';
import { convertWorkflow, type ApiPromptOut } from './convert.js';
import { isUiWorkflow } from './graph.js';

const HERE = new URL('../../../test/fixtures/workflow-convert/', import.meta.url);
const readJson = (path: string | URL): unknown => JSON.parse(readFileSync(path, 'utf8'));

export const TEST_OBJECT_INFO = {
  ...(readJson(`${COMFY_FIXTURES}/object_info.json`) as ObjectInfo),
  ...(readJson(new URL('object_info-newer-nodes.json', HERE)) as ObjectInfo),
} as ObjectInfo;

function withoutTitles(prompt: ApiPromptOut): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(prompt).map(([id, n]) => [id, { inputs: n.inputs, class_type: n.class_type }]),
  );
}

function explicitTitles(workflow: unknown, prompt: ApiPromptOut): Record<string, string> {
  const wf = workflow as { nodes: { id: number; title?: string }[] };
  const out: Record<string, string> = {};
  for (const n of wf.nodes)
    if (n.title && prompt[String(n.id)]) out[String(n.id)] = prompt[String(n.id)]!._meta.title;
  return out;
}

const cases: { name: string; workflow: string; reference: URL }[] = [
  ...readdirSync(WORKFLOW_FIXTURES)
    .filter((f) => f.endsWith('.json') && isUiWorkflow(readJson(`${WORKFLOW_FIXTURES}/${f}`)))
    .map((f) => ({
      name: f,
      workflow: `${WORKFLOW_FIXTURES}/${f}`,
      reference: new URL(f.replace(/\.json$/, '.frontend.api.json'), HERE),
    })),
  ...['nested_subgraphs_schema1', 'flux2_instance_values', 'dynamic_prompts'].map((name) => ({
    name: `${name}.json`,
    workflow: new URL(`${name}.json`, HERE).pathname,
    reference: new URL(`${name}.frontend.api.json`, HERE),
  })),
  {
    name: 'legacy_primitive_reroute_bypass.json',
    workflow: new URL('legacy_primitive_reroute_bypass.json', HERE).pathname,
    reference: new URL('legacy_primitive_reroute_bypass.frontend.api.json', HERE),
  },
];

describe('convertWorkflow matches the real frontend', () => {
  it('has a reference for every UI-format workflow fixture', () => {
    expect(cases.length).toBeGreaterThanOrEqual(3);
  });

  for (const c of cases) {
    it(c.name, () => {
      const workflow = readJson(c.workflow);
      const reference = readJson(c.reference) as ApiPromptOut;
      // The references were recorded with Math.random = () => 0 (dynamic prompts pick the first option).
      const result = convertWorkflow(workflow, TEST_OBJECT_INFO, { random: () => 0 });
      if (!result.ok) throw new Error(result.error.message);
      expect(withoutTitles(result.prompt)).toEqual(withoutTitles(reference));
      expect(explicitTitles(workflow, result.prompt)).toEqual(explicitTitles(workflow, reference));
    });
  }

  it('does not change the workflow it converts', () => {
    const workflow = readJson(`${WORKFLOW_FIXTURES}/ltx2_text_to_video.json`);
    const before = JSON.stringify(workflow);
    convertWorkflow(workflow, TEST_OBJECT_INFO);
    expect(JSON.stringify(workflow)).toBe(before);
  });
});

describe('hand-checked details', () => {
  const flux = () => {
    const r = convertWorkflow(
      readJson(`${WORKFLOW_FIXTURES}/flux2_klein_9b_text_to_image.json`),
      TEST_OBJECT_INFO,
    );
    if (!r.ok) throw new Error(r.error.message);
    return r.prompt;
  };

  it('flattens the subgraph instance into <instance>:<inner> ids and leaves the bypassed one out', () => {
    const p = flux();
    expect(
      Object.keys(p)
        .filter((k) => !k.startsWith('75:'))
        .sort(),
    ).toEqual(['76', '9']);
    // The output goes through the subgraph's IMAGE output to the inner VAEDecode.
    expect(p['9']!.inputs.images).toEqual(['75:65', 0]);
    // The subgraph input `text` is linked outside to the PrimitiveStringMultiline node.
    expect(p['75:74']!.inputs.text).toEqual(['76', 0]);
  });

  it('skips control_after_generate values and keeps the seed', () => {
    // RandomNoise widgets_values [432262096973490, "randomize"]: the second is the control widget.
    expect(flux()['75:73']!.inputs).toEqual({ noise_seed: 432262096973490 });
  });

  it('names the node of a workflow the workers cannot run', () => {
    const wf = readJson(`${WORKFLOW_FIXTURES}/flux2_klein_9b_text_to_image.json`);
    const { Flux2Scheduler: _, ...without } = TEST_OBJECT_INFO;
    void _;
    const r = convertWorkflow(wf, without as ObjectInfo);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.error.node_id).toBe('75:62');
    expect(r.error.class_type).toBe('Flux2Scheduler');
    expect(r.error.message).toContain('Flux2Scheduler');
  });

  it('names the node whose link is broken', () => {
    const wf = readJson(new URL('legacy_primitive_reroute_bypass.json', HERE)) as { links: unknown[][] };
    wf.links = wf.links.filter((l) => l[0] !== 5);
    const r = convertWorkflow(wf, TEST_OBJECT_INFO);
    expect(r).toMatchObject({ ok: false, error: { node_id: '5', class_type: 'KSampler' } });
    if (!r.ok) expect(r.error.message).toMatch(/input "positive" uses link 5, which does not exist/);
  });

  it('resolves dynamic prompts with the random it is given, comments stripped', () => {
    const wf = readJson(new URL('dynamic_prompts.json', HERE));
    const last = convertWorkflow(wf, TEST_OBJECT_INFO, { random: () => 0.99 });
    expect(last.ok && last.prompt['2']!.inputs.text).toBe('a teal cat \nsecond  line {kept} x');
    expect(last.ok && last.prompt['3']!.inputs.text).toBe('blue http:');
  });

  it('boxes array widget values so ComfyUI does not read them as links', () => {
    const wf = readJson(new URL('legacy_primitive_reroute_bypass.json', HERE)) as {
      nodes: { id: number; widgets_values?: unknown[] }[];
    };
    wf.nodes.find((n) => n.id === 2)!.widgets_values = [['a', 'b']];
    const r = convertWorkflow(wf, TEST_OBJECT_INFO);
    expect(r.ok && r.prompt['2']!.inputs.text).toEqual({ __value__: ['a', 'b'] });
  });

  it('refuses what is not a UI workflow with a message, never a throw', () => {
    for (const bad of [
      null,
      1,
      'x',
      [],
      {},
      { nodes: [1] },
      { nodes: [{ id: 1 }] },
      { nodes: [], links: [[1]] },
    ]) {
      const r = convertWorkflow(bad, TEST_OBJECT_INFO);
      expect(r.ok).toBe(false);
    }
  });

  it('keeps hostile ids and names as plain keys', () => {
    const wf = {
      nodes: [
        {
          id: '__proto__',
          type: 'EmptyImage',
          mode: 0,
          outputs: [{ name: 'IMAGE', type: 'IMAGE', links: [1] }],
          widgets_values: [8, 8, 1, 0],
        },
        {
          id: 2,
          type: 'SaveImage',
          mode: 0,
          inputs: [{ name: 'images', type: 'IMAGE', link: 1 }],
          widgets_values: ['x'],
        },
      ],
      links: [[1, '__proto__', 0, 2, 0, 'IMAGE']],
    };
    const r = convertWorkflow(wf, TEST_OBJECT_INFO);
    if (!r.ok) throw new Error(r.error.message);
    expect(Object.keys(r.prompt).sort()).toEqual(['2', '__proto__']);
    expect(Object.getPrototypeOf(r.prompt)).toBe(Object.prototype);
    expect(r.prompt['2']!.inputs.images).toEqual(['__proto__', 0]);
  });

  it('answers a message, not a stack overflow, for absurdly deep bypass chains', () => {
    const n = 20_000;
    const nodes: unknown[] = [
      {
        id: 0,
        type: 'EmptyImage',
        mode: 0,
        outputs: [{ name: 'IMAGE', type: 'IMAGE', links: [1] }],
        widgets_values: [8, 8, 1, 0],
      },
    ];
    const links: unknown[][] = [];
    for (let i = 1; i <= n; i++) {
      const last = i === n;
      nodes.push({
        id: i,
        type: last ? 'SaveImage' : 'ImageInvert',
        mode: last ? 0 : 4,
        inputs: [{ name: last ? 'images' : 'image', type: 'IMAGE', link: i }],
        outputs: last ? [] : [{ name: 'IMAGE', type: 'IMAGE', links: [i + 1] }],
      });
      links.push([i, i - 1, 0, i, 0, 'IMAGE']);
    }
    const r = convertWorkflow({ nodes, links }, TEST_OBJECT_INFO);
    expect(r).toMatchObject({ ok: false, error: { message: expect.stringMatching(/too deeply/) } });
  });

  it('asks for a legacy group node to be converted to a subgraph, naming it', () => {
    const wf = {
      nodes: [{ id: 4, type: 'workflow>My group', mode: 0 }],
      links: [],
      extra: { groupNodes: {} },
    };
    const r = convertWorkflow(wf, TEST_OBJECT_INFO);
    expect(r).toMatchObject({ ok: false, error: { node_id: '4', class_type: 'workflow>My group' } });
    if (!r.ok)
      expect(r.error.message).toMatch(
        /legacy group node; open the workflow in ComfyUI and convert it to a subgraph/,
      );
  });

  it('reports a subgraph that contains itself', () => {
    const sg = {
      id: 'loop',
      name: 'Loop',
      nodes: [{ id: 1, type: 'loop', mode: 0 }],
      links: [],
      inputs: [],
      outputs: [],
    };
    const r = convertWorkflow(
      { nodes: [{ id: 5, type: 'loop', mode: 0 }], links: [], definitions: { subgraphs: [sg] } },
      TEST_OBJECT_INFO,
    );
    expect(r).toMatchObject({ ok: false, error: { message: expect.stringMatching(/contains itself/) } });
  });
});
