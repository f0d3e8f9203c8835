/**
 * Prompts sent to the per-user ComfyUI API (`/<user>/api/prompt`): broken bodies, odd graphs,
 * limits. Part of the participant family (participant.ts).
 */
import type { Case, HttpCase } from '../types.js';
import { big, chainPrompt, deepJson, deepObject, goodPrompt } from './util.js';

const A = '/alice/api';

const promptBody = (body: HttpCase['body'], headers?: Record<string, string>) => ({
  as: 'alice' as const,
  method: 'POST',
  path: `${A}/prompt`,
  body,
  ...(headers ? { headers } : {}),
});

export const prompts: Case[] = [
  { name: 'prompt: not JSON', ...promptBody('{"prompt": '), expect: { status: 400, comfy: 'invalid_json' } },
  { name: 'prompt: empty body', ...promptBody(''), expect: { status: 400, comfy: 'invalid_prompt' } },
  {
    name: 'prompt: JSON array body',
    ...promptBody('[1,2,3]'),
    expect: { status: 400, comfy: 'invalid_prompt' },
  },
  {
    name: 'prompt: JSON string body',
    ...promptBody('"prompt"'),
    expect: { status: 400, comfy: 'invalid_prompt' },
  },
  { name: 'prompt: null body', ...promptBody('null'), expect: { status: 400, comfy: 'invalid_prompt' } },
  {
    name: 'prompt: no prompt key',
    ...promptBody({ client_id: 'x' }),
    expect: { status: 400, comfy: 'no_prompt' },
  },
  {
    name: 'prompt: prompt is a number',
    ...promptBody({ prompt: 5 }),
    expect: { status: 400, comfy: 'invalid_prompt' },
  },
  {
    name: 'prompt: prompt is a string',
    ...promptBody({ prompt: 'rm -rf /' }),
    expect: { status: 400, comfy: 'invalid_prompt' },
  },
  {
    name: 'prompt: node without class_type',
    ...promptBody({ prompt: { '1': { inputs: {} } } }),
    expect: { status: 400, comfy: 'invalid_prompt' },
  },
  {
    name: 'prompt: node is null',
    ...promptBody({ prompt: { '1': null } }),
    expect: { status: 400, comfy: 'invalid_prompt' },
  },
  {
    name: 'prompt: unknown node class',
    ...promptBody({ prompt: { '1': { class_type: 'EvilNode', inputs: {} } } }),
    expect: { status: 400, comfy: 'invalid_prompt' },
  },
  {
    name: 'prompt: class_type is an object',
    ...promptBody({ prompt: { '1': { class_type: { a: 1 }, inputs: {} } } }),
    expect: { status: 400, comfy: 'invalid_prompt' },
  },
  {
    name: 'prompt: class_type __proto__',
    ...promptBody('{"prompt":{"1":{"class_type":"__proto__","inputs":{}}}}'),
    expect: { status: 400, comfy: 'invalid_prompt' },
  },
  {
    name: 'prompt: class_type constructor',
    ...promptBody({ prompt: { '1': { class_type: 'constructor', inputs: {} } } }),
    expect: { status: 400, comfy: 'invalid_prompt' },
  },
  {
    name: 'prompt: node id __proto__',
    ...promptBody('{"prompt":{"__proto__":{"class_type":"SaveImage","inputs":{}}}}'),
    expect: { status: 400, comfy: 'prompt_outputs_failed_validation' },
  },
  {
    name: 'prompt: no output node',
    ...promptBody({
      prompt: { '1': { class_type: 'EmptyImage', inputs: { width: 8, height: 8, batch_size: 1, color: 0 } } },
    }),
    expect: { status: 400, comfy: 'prompt_no_outputs' },
  },
  {
    name: 'prompt: empty prompt object',
    ...promptBody({ prompt: {} }),
    expect: { status: 400, comfy: 'prompt_no_outputs' },
  },
  {
    name: 'prompt: wrong input type (width is a string)',
    ...promptBody(() => {
      const p = goodPrompt();
      p['1']!.inputs.width = 'wide';
      return { prompt: p };
    }),
    expect: { status: 400, comfy: 'prompt_outputs_failed_validation' },
  },
  {
    name: 'prompt: width far above max',
    ...promptBody(() => {
      const p = goodPrompt();
      p['1']!.inputs.width = 1e12;
      return { prompt: p };
    }),
    expect: { status: 400, comfy: 'prompt_outputs_failed_validation' },
  },
  {
    name: 'prompt: link to a node that does not exist',
    ...promptBody(() => {
      const p = goodPrompt();
      p['2']!.inputs.image = ['999', 0];
      return { prompt: p };
    }),
    expect: { status: 400, comfy: 'prompt_outputs_failed_validation' },
  },
  {
    name: 'prompt: link with a huge output index',
    ...promptBody(() => {
      const p = goodPrompt();
      p['2']!.inputs.image = ['1', 2 ** 53];
      return { prompt: p };
    }),
    expect: { status: 400, comfy: 'prompt_outputs_failed_validation' },
  },
  {
    name: 'prompt: two-node cycle',
    ...promptBody({
      prompt: {
        a: { class_type: 'ImageInvert', inputs: { image: ['b', 0] } },
        b: { class_type: 'ImageInvert', inputs: { image: ['a', 0] } },
        s: { class_type: 'SaveImage', inputs: { images: ['a', 0], filename_prefix: 'x' } },
      },
    }),
    expect: { status: 400, comfy: 'prompt_outputs_failed_validation' },
  },
  {
    name: 'prompt: self-loop',
    ...promptBody({
      prompt: {
        a: { class_type: 'ImageInvert', inputs: { image: ['a', 0] } },
        s: { class_type: 'SaveImage', inputs: { images: ['a', 0], filename_prefix: 'x' } },
      },
    }),
    expect: { status: 400, comfy: 'prompt_outputs_failed_validation' },
  },
  {
    name: 'prompt: 5,001-node chain (one over the 5,000-node limit)',
    ...promptBody(() => ({ prompt: chainPrompt(4999) })),
    expect: { status: 400, comfy: 'invalid_prompt' },
  },
  {
    // Within the node limit, but deeper than ComfyUI's own recursion goes: its RecursionError, not ours.
    name: 'prompt: 4,990-node chain (within the limit, deeper than ComfyUI validates)',
    ...promptBody(() => ({ prompt: chainPrompt(4988) })),
    expect: { status: 400, comfy: 'prompt_outputs_failed_validation' },
  },
  {
    name: 'prompt: 500-node chain is accepted',
    ...promptBody(() => ({ prompt: chainPrompt(498) })),
    expect: { status: 200 },
  },
  {
    name: 'prompt: 6,000-node chain',
    ...promptBody(() => ({ prompt: chainPrompt(6000) })),
    expect: { status: 400, comfy: 'invalid_prompt' },
  },
  {
    name: 'prompt: 5,000-node cycle',
    ...promptBody(() => {
      const p = chainPrompt(4990) as Record<string, { class_type: string; inputs: Record<string, unknown> }>;
      p['1']!.inputs.image = ['4990', 0];
      return { prompt: p };
    }),
    expect: { status: 400, comfy: 'prompt_outputs_failed_validation' },
  },
  {
    name: 'prompt: body nested 100,000 arrays deep',
    ...promptBody(`{"prompt":${deepJson(100_000)}}`),
    expect: { status: 400, comfy: 'invalid_json' },
  },
  {
    name: 'prompt: input value nested 100,000 objects deep',
    ...promptBody(
      `{"prompt":{"1":{"class_type":"SaveImage","inputs":{"images":${deepObject(100_000)},"filename_prefix":"x"}}}}`,
    ),
    expect: { status: 400, comfy: 'invalid_json' },
  },
  {
    name: 'prompt: extra_data nested 100,000 deep',
    ...promptBody(() => `{"prompt":${JSON.stringify(goodPrompt())},"extra_data":${deepObject(100_000)}}`),
    expect: { status: 400, comfy: 'invalid_json' },
  },
  {
    name: 'prompt: body over BODY_LIMIT',
    ...promptBody(() => `{"prompt":{},"pad":"${big(3 * 1024 * 1024)}"}`),
    expect: { status: 413, code: 'PAYLOAD_TOO_LARGE' },
  },
  {
    name: 'prompt: prompt_id not a UUID',
    ...promptBody(() => ({ prompt: goodPrompt(), prompt_id: '../../etc' })),
    expect: { status: 400, comfy: 'invalid_prompt_id' },
  },
  {
    name: 'prompt: prompt_id upper-case UUID',
    ...promptBody(() => ({ prompt: goodPrompt(), prompt_id: 'AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEEEEEE' })),
    expect: { status: 400, comfy: 'invalid_prompt_id' },
  },
  {
    name: 'prompt: prompt_id is a number',
    ...promptBody(() => ({ prompt: goodPrompt(), prompt_id: 7 })),
    expect: { status: 400, comfy: 'invalid_prompt_id' },
  },
  {
    name: 'prompt: sent as text/plain (the frontend does) is accepted',
    ...promptBody(() => JSON.stringify({ prompt: goodPrompt() }), { 'content-type': 'text/plain' }),
    expect: { status: 200 },
  },
  {
    name: 'prompt: sent with an odd content type is read as JSON',
    ...promptBody(() => JSON.stringify({ prompt: goodPrompt() }), { 'content-type': 'application/x-evil' }),
    expect: { status: 200 },
  },
  {
    name: 'prompt: participant asks for front of queue (ignored, accepted)',
    ...promptBody(() => ({ prompt: goodPrompt(), front: true, number: -1e308 })),
    expect: { status: 200 },
  },
  {
    name: 'prompt: huge client_id is accepted (trimmed)',
    ...promptBody(() => ({ prompt: goodPrompt(), client_id: big(100_000) })),
    expect: { status: 200 },
  },
  {
    name: 'prompt: sensitive extra_data keys are accepted (never stored)',
    ...promptBody(() => ({ prompt: goodPrompt(), extra_data: { api_key_comfy_org: 'secret' } })),
    expect: { status: 200 },
  },
  {
    name: 'prompt: partial_execution_targets not a list',
    ...promptBody(() => ({ prompt: goodPrompt(), partial_execution_targets: { a: 1 } })),
    expect: { status: 200 },
  },
  {
    name: 'prompt: partial_execution_targets naming no node',
    ...promptBody(() => ({ prompt: goodPrompt(), partial_execution_targets: ['nope'] })),
    expect: { status: 400, comfy: 'prompt_no_outputs' },
  },
  {
    name: 'prompt: LoadImage of another user file',
    ...promptBody({
      prompt: {
        '1': { class_type: 'LoadImage', inputs: { image: '../../bob/input/x.png' } },
        '2': { class_type: 'SaveImage', inputs: { images: ['1', 0], filename_prefix: 'x' } },
      },
    }),
    expect: { status: 400, comfy: 'prompt_outputs_failed_validation' },
  },
  {
    name: 'prompt: LoadImage absolute path',
    ...promptBody({
      prompt: {
        '1': { class_type: 'LoadImage', inputs: { image: '/etc/passwd' } },
        '2': { class_type: 'SaveImage', inputs: { images: ['1', 0], filename_prefix: 'x' } },
      },
    }),
    expect: { status: 400, comfy: 'prompt_outputs_failed_validation' },
  },
  {
    name: 'prompt: SaveImage prefix with ../',
    ...promptBody(() => {
      const p = goodPrompt();
      p['3']!.inputs.filename_prefix = '../../../etc/x';
      return { prompt: p };
    }),
    expect: { status: 200 },
  },
  {
    name: 'GET prompt answers the queue count',
    as: 'alice',
    method: 'GET',
    path: `${A}/prompt`,
    expect: { status: 200 },
  },
];
