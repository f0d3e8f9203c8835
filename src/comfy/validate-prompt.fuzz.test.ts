/**
 * Fuzzing prompt validation (issue 10): whatever the prompt (random JSON, random graphs over real
 * node types with random links, cycles, missing nodes, wrong types, long chains), validatePrompt
 * never throws and answers either ok or an error body in ComfyUI's shape.
 */
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PromptErrorBodySchema, type ObjectInfo } from './protocol.js';
import { MAX_LINK_DEPTH, validatePrompt } from './validate-prompt.js';

const objectInfo = JSON.parse(
  readFileSync(
    new URL('../../test/support/comfyui-standin/vendored/object_info.v0.3.64.json', import.meta.url),
    'utf8',
  ),
) as ObjectInfo;
const CLASSES = Object.keys(objectInfo);
// Few ids, so random links often hit existing nodes (and make cycles).
const ID = fc.constantFrom('1', '2', '3', '4', '5', '10', 'save', '__proto__', 'constructor');
const NAMES = fc.constantFrom(
  'image',
  'images',
  'width',
  'height',
  'batch_size',
  'color',
  'filename_prefix',
  'seed',
  'model',
  'ckpt_name',
  'text',
  'clip',
  'samples',
  'vae',
  '__value__',
);

/** An input value: literals of every JSON kind, links (well- and ill-formed), `{__value__}`. */
const inputValue: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 3, arbitrary: fc.tuple(ID, fc.integer({ min: -2, max: 5 })) },
  { weight: 1, arbitrary: fc.tuple(fc.jsonValue(), fc.jsonValue()) },
  { weight: 1, arbitrary: fc.array(fc.jsonValue(), { maxLength: 4 }) },
  { weight: 2, arbitrary: fc.integer() },
  { weight: 1, arbitrary: fc.double() },
  { weight: 2, arbitrary: fc.string() },
  { weight: 1, arbitrary: fc.boolean() },
  { weight: 1, arbitrary: fc.constant(null) },
  { weight: 1, arbitrary: fc.record({ __value__: fc.jsonValue() }) },
  { weight: 1, arbitrary: fc.jsonValue() },
);

const node: fc.Arbitrary<unknown> = fc.oneof(
  {
    weight: 8,
    arbitrary: fc.record(
      {
        class_type: fc.oneof({ weight: 9, arbitrary: fc.constantFrom(...CLASSES) }, fc.jsonValue()),
        inputs: fc.oneof(
          { weight: 9, arbitrary: fc.dictionary(NAMES, inputValue, { maxKeys: 6 }) },
          fc.jsonValue(),
        ),
        _meta: fc.jsonValue(),
      },
      { requiredKeys: ['class_type'] },
    ),
  },
  { weight: 1, arbitrary: fc.jsonValue() },
);

const graph = fc.dictionary(ID, node, { minKeys: 0, maxKeys: 8 });

/** A chain source → n links → SaveImage, sometimes closed into a cycle or broken. */
const chain = fc
  .record({
    n: fc.oneof(fc.integer({ min: 1, max: 50 }), fc.integer({ min: MAX_LINK_DEPTH - 5, max: 1500 })),
    cycle: fc.boolean(),
    brokenAt: fc.option(fc.nat(1500), { nil: undefined }),
  })
  .map(({ n, cycle, brokenAt }) => {
    const p: Record<string, unknown> = {
      '0': cycle
        ? { class_type: 'ImageInvert', inputs: { image: [String(n), 0] } }
        : { class_type: 'EmptyImage', inputs: { width: 8, height: 8, batch_size: 1, color: 0 } },
    };
    for (let i = 1; i <= n; i++)
      p[String(i)] = {
        class_type: 'ImageInvert',
        inputs: { image: [brokenAt === i ? 'missing' : String(i - 1), 0] },
      };
    p.save = { class_type: 'SaveImage', inputs: { images: [String(n), 0], filename_prefix: 'x' } };
    return p;
  });

function checkAnswer(prompt: unknown, partial: string[] | null): void {
  const r = validatePrompt(prompt, objectInfo, {
    partialExecutionTargets: partial,
    inputFileExists: (name) => name.length % 2 === 0,
  });
  if (r.ok) {
    expect(Array.isArray(r.outputs)).toBe(true);
    expect(r.outputs.length).toBeGreaterThan(0);
    expect(typeof r.prompt).toBe('object');
  } else {
    expect(r.status).toBe(400);
    const body = PromptErrorBodySchema.safeParse(r.body);
    expect(body.success, JSON.stringify(r.body).slice(0, 500)).toBe(true);
    expect(typeof r.body.error.type).toBe('string');
    expect(typeof r.body.error.message).toBe('string');
    // What the HTTP layer sends must be serialisable.
    expect(() => JSON.stringify(r.body)).not.toThrow();
  }
}

describe('validatePrompt under fuzzing', () => {
  it('random JSON as the prompt: never throws, ok or a ComfyUI error body', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (p) => checkAnswer(p, null)),
      { numRuns: 300 },
    );
  });

  it('random graphs of real node types: never throws, ok or a ComfyUI error body', () => {
    fc.assert(
      fc.property(graph, fc.option(fc.array(ID, { maxLength: 3 }), { nil: null }), (p, partial) =>
        checkAnswer(p, partial),
      ),
      { numRuns: 1000 },
    );
  });

  it('chains, long ones, cycles and broken links: never throws', () => {
    fc.assert(
      fc.property(chain, (p) => checkAnswer(p, null)),
      { numRuns: 40 },
    );
  });
});
