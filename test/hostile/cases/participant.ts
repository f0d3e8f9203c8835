/**
 * The per-user ComfyUI API at /<user>/(api/)…: prompt, queue, history, jobs, interrupt, view,
 * object_info and friends. Isolation (alice touching carol's or bob's things) is here too; the
 * run's invariant then checks carol's jobs are all still pending.
 */
import type { Case, Family, HttpCase } from '../types.js';
import { PATH_ATTACKS, big, chainPrompt, deepJson, deepObject, goodPrompt } from './util.js';

const A = '/alice/api';
const carol0 = (c: { jobs: { carol: string[] } }) => c.jobs.carol[0]!;

const isolation: Case[] = [
  {
    name: 'anonymous GET queue',
    method: 'GET',
    path: `${A}/queue`,
    expect: { status: 401, code: 'UNAUTHORIZED' },
  },
  {
    name: 'anonymous page navigation is sent to the login form',
    method: 'GET',
    path: '/alice/',
    headers: { accept: 'text/html' },
    expect: { status: 303, location: '/login?next=%2Falice%2F' },
  },
  {
    name: 'alice reads bob queue',
    as: 'alice',
    method: 'GET',
    path: '/bob/api/queue',
    expect: { status: 403, code: 'FORBIDDEN' },
  },
  {
    name: 'alice reads bob history',
    as: 'alice',
    method: 'GET',
    path: '/bob/api/history',
    expect: { status: 403, code: 'FORBIDDEN' },
  },
  {
    name: 'alice reads carol jobs',
    as: 'alice',
    method: 'GET',
    path: '/carol/api/jobs',
    expect: { status: 403, code: 'FORBIDDEN' },
  },
  {
    name: 'alice submits a prompt into bob space',
    as: 'alice',
    method: 'POST',
    path: '/bob/api/prompt',
    body: () => ({ prompt: goodPrompt() }),
    expect: { status: 403, code: 'FORBIDDEN' },
  },
  {
    name: 'alice interrupts carol',
    as: 'alice',
    method: 'POST',
    path: '/carol/api/interrupt',
    body: {},
    expect: { status: 403, code: 'FORBIDDEN' },
  },
  {
    name: 'alice views bob file',
    as: 'alice',
    method: 'GET',
    path: '/bob/api/view?filename=x.png&type=input',
    expect: { status: 403, code: 'FORBIDDEN' },
  },
  {
    name: 'alice probes a user that does not exist (same answer as existing)',
    as: 'alice',
    method: 'GET',
    path: '/nosuchuser/api/queue',
    expect: { status: 403, code: 'FORBIDDEN' },
  },
  {
    name: 'instructor asks for a user that does not exist',
    as: 'admin',
    method: 'GET',
    path: '/nosuchuser/api/queue',
    expect: { status: 404, code: 'USER_NOT_FOUND' },
  },
  {
    name: 'percent-encoded other user name (%62ob)',
    as: 'alice',
    method: 'GET',
    path: '/%62ob/api/queue',
    expect: { status: 403, code: 'FORBIDDEN' },
  },
  {
    name: 'upper-case user name is no user',
    as: 'alice',
    method: 'GET',
    path: '/BOB/api/queue',
    expect: { status: 404, code: 'NOT_FOUND' },
  },
  {
    name: 'traversal in the user segment (bob%2F..%2Falice)',
    as: 'alice',
    method: 'GET',
    path: '/bob%2F..%2Falice/api/queue',
    expect: { status: 404, code: 'NOT_FOUND' },
  },
  {
    name: 'reserved name as user (api)',
    as: 'alice',
    method: 'GET',
    path: '/api/queue',
    expect: { status: 404, code: 'NOT_FOUND' },
  },
  {
    name: 'alice history of carol job looks empty',
    as: 'alice',
    method: 'GET',
    path: (c) => `${A}/history/${carol0(c)}`,
    expect: {
      status: 200,
      check: (r) => (r.body.toString() === '{}' ? null : `leaked: ${r.body.toString().slice(0, 100)}`),
    },
  },
  {
    name: 'alice reads carol job via /api/jobs/:id',
    as: 'alice',
    method: 'GET',
    path: (c) => `${A}/jobs/${carol0(c)}`,
    expect: { status: 404, errorText: 'Job not found' },
  },
  {
    name: 'alice cancels carol job via /api/jobs/:id/cancel',
    as: 'alice',
    method: 'POST',
    path: (c) => `${A}/jobs/${carol0(c)}/cancel`,
    expect: {
      status: 200,
      check: (r) =>
        (r.json as { cancelled?: boolean })?.cancelled === false ? null : 'cancelled someone else’s job',
    },
  },
  {
    name: 'alice deletes carol jobs from "her" queue',
    as: 'alice',
    method: 'POST',
    path: `${A}/queue`,
    body: (c) => ({ delete: c.jobs.carol }),
    expect: { status: 200 },
  },
  {
    name: 'alice interrupts carol job by prompt_id',
    as: 'alice',
    method: 'POST',
    path: `${A}/interrupt`,
    body: (c) => ({ prompt_id: carol0(c) }),
    expect: { status: 200 },
  },
  {
    name: 'alice batch-cancels carol jobs',
    as: 'alice',
    method: 'POST',
    path: `${A}/jobs/cancel`,
    body: (c) => ({ job_ids: c.jobs.carol }),
    expect: {
      status: 200,
      check: (r) => ((r.json as { cancelled?: boolean })?.cancelled === false ? null : 'cancelled'),
    },
  },
  {
    name: 'alice deletes carol history entries',
    as: 'alice',
    method: 'POST',
    path: `${A}/history`,
    body: (c) => ({ delete: c.jobs.carol }),
    expect: { status: 200 },
  },
  {
    name: 'alice reuses carol job id as her prompt_id',
    as: 'alice',
    method: 'POST',
    path: `${A}/prompt`,
    body: (c) => ({ prompt: goodPrompt(), prompt_id: carol0(c) }),
    expect: { status: 400, comfy: 'invalid_prompt_id' },
  },
  {
    name: 'alice queue lists none of carol jobs',
    as: 'alice',
    method: 'GET',
    path: `${A}/queue`,
    expect: {
      status: 200,
      check: (r, c) => (c.jobs.carol.some((id) => r.body.includes(id)) ? 'carol’s job visible' : null),
    },
  },
  {
    name: 'alice /api/jobs lists none of carol jobs',
    as: 'alice',
    method: 'GET',
    path: `${A}/jobs?status=pending,in_progress`,
    expect: {
      status: 200,
      check: (r, c) => (c.jobs.carol.some((id) => r.body.includes(id)) ? 'carol’s job visible' : null),
    },
  },
  {
    name: 'alice views carol input through ../',
    as: 'alice',
    method: 'GET',
    path: `${A}/view?filename=../../carol/input/x.png&type=input`,
    expect: { status: 400, code: 'INVALID_PATH' },
  },
  {
    name: 'alice views bob input through subfolder ../',
    as: 'alice',
    method: 'GET',
    path: `${A}/view?filename=x.png&subfolder=../../bob/input&type=input`,
    expect: { status: 400, code: 'INVALID_PATH' },
  },
  {
    name: 'bob views alice seeded upload',
    as: 'bob',
    method: 'GET',
    path: (c) => `/bob/api/view?filename=${c.aliceFile}&type=input`,
    expect: { status: 404, code: 'FILE_NOT_FOUND' },
  },
  {
    name: 'alice internal files of bob',
    as: 'alice',
    method: 'GET',
    path: '/bob/internal/files/input',
    expect: { status: 403, code: 'FORBIDDEN' },
  },
  {
    name: 'forged session cookie',
    method: 'GET',
    path: `${A}/queue`,
    headers: { cookie: 'cm_session=eyJ1IjoiYWxpY2UiLCJ2IjoxLCJlIjo5OTk5OTk5OTk5fQ.forged' },
    expect: { status: 401, code: 'UNAUTHORIZED' },
  },
  {
    name: 'session cookie of alice with the body re-signed by nobody (claims swapped to bob)',
    as: 'anon',
    method: 'GET',
    path: '/bob/api/queue',
    headers: (c) => {
      const [, sig] = (c.headers('alice').cookie ?? '').replace('cm_session=', '').split('.');
      const forged = Buffer.from(JSON.stringify({ u: 'bob', v: 1, e: 9_999_999_999 })).toString('base64url');
      return { cookie: `cm_session=${forged}.${sig}` };
    },
    expect: { status: 401, code: 'UNAUTHORIZED' },
  },
  {
    name: 'expired-looking cookie',
    method: 'GET',
    path: `${A}/queue`,
    headers: { cookie: 'cm_session=eyJ1IjoiYWxpY2UiLCJ2IjoxLCJlIjoxfQ.AAAA' },
    expect: { status: 401, code: 'UNAUTHORIZED' },
  },
  {
    name: 'huge garbage cookie',
    method: 'GET',
    path: `${A}/queue`,
    headers: { cookie: `cm_session=${'A'.repeat(6000)}.${'B'.repeat(100)}` },
    expect: { status: 401, code: 'UNAUTHORIZED' },
  },
  {
    name: 'cookie without a dot',
    method: 'GET',
    path: `${A}/queue`,
    headers: { cookie: 'cm_session=nodot' },
    expect: { status: 401, code: 'UNAUTHORIZED' },
  },
  {
    name: 'two session cookies, second is alice',
    method: 'GET',
    path: '/alice/api/queue',
    headers: (c) => ({ cookie: `cm_session=junk; ${c.headers('alice').cookie}` }),
    expect: { status: 401, code: 'UNAUTHORIZED' },
  },
  {
    name: 'Basic with no colon',
    method: 'GET',
    path: `${A}/queue`,
    headers: { authorization: `Basic ${Buffer.from('alice').toString('base64')}` },
    expect: { status: 401, code: 'UNAUTHORIZED' },
  },
  {
    name: 'Basic with garbage base64',
    method: 'GET',
    path: `${A}/queue`,
    headers: { authorization: 'Basic !!!$$$' },
    expect: { status: 401, code: 'UNAUTHORIZED' },
  },
  {
    name: 'Bearer junk on a participant route',
    method: 'GET',
    path: `${A}/queue`,
    headers: { authorization: 'Bearer junk-token' },
    expect: { status: 401, code: 'INVALID_TOKEN' },
  },
  {
    name: 'worker token is not a participant credential',
    as: 'worker',
    method: 'GET',
    path: `${A}/queue`,
    expect: { status: 401, code: 'INVALID_TOKEN' },
  },
  {
    name: 'cross-site POST with alice cookie',
    as: 'alice',
    method: 'POST',
    path: `${A}/prompt`,
    headers: { origin: 'https://evil.example' },
    body: () => ({ prompt: goodPrompt() }),
    expect: { status: 403, code: 'CSRF_FAILED' },
  },
  {
    name: 'cross-site POST with unparsable Origin',
    as: 'alice',
    method: 'POST',
    path: `${A}/interrupt`,
    headers: { origin: 'null' },
    body: {},
    expect: { status: 403, code: 'CSRF_FAILED' },
  },
  {
    name: 'cross-site userdata write',
    as: 'alice',
    method: 'POST',
    path: `${A}/userdata/workflows%2Fcsrf.json`,
    headers: { origin: 'http://evil.example' },
    body: '{}',
    expect: { status: 403, code: 'CSRF_FAILED' },
  },
];

/** Correctly signed sessions whose claims no longer hold: the signature alone is not enough. */
const signed: Case[] = [
  {
    name: 'signed session cookie that expired a minute ago',
    method: 'GET',
    path: `${A}/queue`,
    headers: (c) => ({ cookie: c.signedSession((k) => ({ ...k, e: Math.floor(Date.now() / 1000) - 60 })) }),
    expect: { status: 401, code: 'UNAUTHORIZED' },
  },
  {
    name: 'signed session cookie from before a password reset (old version)',
    method: 'GET',
    path: `${A}/queue`,
    headers: (c) => ({ cookie: c.signedSession((k) => ({ ...k, v: Number(k.v) + 1 })) }),
    expect: { status: 401, code: 'UNAUTHORIZED' },
  },
  {
    name: 'signed session cookie of an account that does not exist',
    method: 'GET',
    path: '/ghost/api/queue',
    headers: (c) => ({ cookie: c.signedSession((k) => ({ ...k, u: 'ghost' })) }),
    expect: { status: 401, code: 'UNAUTHORIZED' },
  },
  {
    name: 'signed session cookie with the claims of another account (bob) but alice’s creation time',
    method: 'GET',
    path: '/bob/api/queue',
    headers: (c) => ({ cookie: c.signedSession((k) => ({ ...k, u: 'bob' })) }),
    expect: { status: 401, code: 'UNAUTHORIZED' },
  },
  {
    name: 'signed session cookie with claims of the wrong types',
    method: 'GET',
    path: `${A}/queue`,
    headers: (c) => ({ cookie: c.signedSession((k) => ({ ...k, e: '9999999999', v: null })) }),
    expect: { status: 401, code: 'UNAUTHORIZED' },
  },
  {
    name: 'signed session cookie that is still valid (sanity: the forging works)',
    method: 'GET',
    path: `${A}/queue`,
    headers: (c) => ({ cookie: c.signedSession((k) => k) }),
    expect: { status: 200 },
  },
];

const promptBody = (body: HttpCase['body'], headers?: Record<string, string>) => ({
  as: 'alice' as const,
  method: 'POST',
  path: `${A}/prompt`,
  body,
  ...(headers ? { headers } : {}),
});

const prompts: Case[] = [
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

const queueEtc: Case[] = [
  {
    name: 'queue: POST not JSON',
    as: 'alice',
    method: 'POST',
    path: `${A}/queue`,
    body: '{{',
    expect: { status: 400, code: 'INVALID_JSON' },
  },
  {
    name: 'queue: POST a list',
    as: 'alice',
    method: 'POST',
    path: `${A}/queue`,
    body: '[]',
    expect: { status: 400, code: 'VALIDATION_FAILED' },
  },
  {
    name: 'queue: delete is a string',
    as: 'alice',
    method: 'POST',
    path: `${A}/queue`,
    body: { delete: 'all' },
    expect: { status: 400, code: 'VALIDATION_FAILED' },
  },
  {
    name: 'queue: delete 20,000 odd ids',
    as: 'alice',
    method: 'POST',
    path: `${A}/queue`,
    body: { delete: Array.from({ length: 20_000 }, (_, i) => (i % 2 ? i : { x: i })) },
    expect: { status: 200 },
  },
  {
    name: 'queue: nested 100,000 deep (600 kB, over the small control-body limit)',
    as: 'alice',
    method: 'POST',
    path: `${A}/queue`,
    body: deepObject(100_000),
    expect: { status: 413, code: 'PAYLOAD_TOO_LARGE' },
  },
  {
    name: 'queue: nested 1,000 deep (small)',
    as: 'alice',
    method: 'POST',
    path: `${A}/queue`,
    body: deepObject(1000),
    expect: { status: 400, code: 'INVALID_JSON' },
  },
  {
    name: 'history: max_items not a number',
    as: 'alice',
    method: 'GET',
    path: `${A}/history?max_items=abc`,
    expect: { status: 400, code: 'VALIDATION_FAILED' },
  },
  {
    name: 'history: offset not a number',
    as: 'alice',
    method: 'GET',
    path: `${A}/history?offset=NaN`,
    expect: { status: 400, code: 'VALIDATION_FAILED' },
  },
  {
    name: 'history: max_items huge',
    as: 'alice',
    method: 'GET',
    path: `${A}/history?max_items=99999999999999999999999`,
    expect: { status: 200 },
  },
  {
    name: 'history: negative offset',
    as: 'alice',
    method: 'GET',
    path: `${A}/history?offset=-99999`,
    expect: { status: 200 },
  },
  {
    name: 'history: id of 10,000 characters',
    as: 'alice',
    method: 'GET',
    path: `${A}/history/${'a'.repeat(10_000)}`,
    expect: { status: 400, code: 'INVALID_PATH' },
  },
  {
    name: 'history: POST clear with a string',
    as: 'alice',
    method: 'POST',
    path: `${A}/history`,
    body: { clear: 'yes' },
    expect: { status: 200 },
  },
  {
    name: 'history: POST delete a number',
    as: 'alice',
    method: 'POST',
    path: `${A}/history`,
    body: { delete: 5 },
    expect: { status: 400, code: 'VALIDATION_FAILED' },
  },
  {
    name: 'history: POST a bare number',
    as: 'alice',
    method: 'POST',
    path: `${A}/history`,
    body: '5',
    expect: { status: 400, code: 'VALIDATION_FAILED' },
  },
  {
    name: 'jobs: bad status',
    as: 'alice',
    method: 'GET',
    path: `${A}/jobs?status=evil`,
    expect: { status: 400, errorText: 'Invalid status' },
  },
  {
    name: 'jobs: limit 0',
    as: 'alice',
    method: 'GET',
    path: `${A}/jobs?limit=0`,
    expect: { status: 400, errorText: 'limit' },
  },
  {
    name: 'jobs: limit text',
    as: 'alice',
    method: 'GET',
    path: `${A}/jobs?limit=1e3`,
    expect: { status: 400, errorText: 'limit' },
  },
  {
    name: 'jobs: offset text',
    as: 'alice',
    method: 'GET',
    path: `${A}/jobs?offset=abc`,
    expect: { status: 400, errorText: 'offset' },
  },
  {
    name: 'jobs: sort_by evil',
    as: 'alice',
    method: 'GET',
    path: `${A}/jobs?sort_by=__proto__`,
    expect: { status: 400, errorText: 'sort_by' },
  },
  {
    name: 'jobs: sort_order evil',
    as: 'alice',
    method: 'GET',
    path: `${A}/jobs?sort_order=sideways`,
    expect: { status: 400, errorText: 'sort_order' },
  },
  {
    name: 'jobs: repeated status params',
    as: 'alice',
    method: 'GET',
    path: `${A}/jobs?status=pending&status=evil`,
    expect: { status: 200 },
  },
  {
    name: 'jobs: huge offset',
    as: 'alice',
    method: 'GET',
    path: `${A}/jobs?offset=99999999999999999999`,
    expect: { status: 200 },
  },
  {
    name: 'jobs: job id of 4,000 characters',
    as: 'alice',
    method: 'GET',
    path: `${A}/jobs/${'b'.repeat(4000)}`,
    expect: { status: 400, code: 'INVALID_PATH' },
  },
  {
    name: 'jobs: cancel with job_ids a string',
    as: 'alice',
    method: 'POST',
    path: `${A}/jobs/cancel`,
    body: { job_ids: 'all' },
    expect: { status: 400, errorText: 'job_ids' },
  },
  {
    name: 'jobs: cancel with invalid ids',
    as: 'alice',
    method: 'POST',
    path: `${A}/jobs/cancel`,
    body: { job_ids: ['../x', 5, null] },
    expect: { status: 400, errorText: 'invalid id' },
  },
  {
    name: 'jobs: cancel not JSON',
    as: 'alice',
    method: 'POST',
    path: `${A}/jobs/cancel`,
    body: 'nope',
    expect: { status: 400, errorText: 'valid JSON' },
  },
  {
    name: 'interrupt: garbage body is tolerated',
    as: 'alice',
    method: 'POST',
    path: `${A}/interrupt`,
    body: '\u0000\u0001garbage',
    expect: { status: 200 },
  },
  {
    name: 'interrupt: prompt_id is an object',
    as: 'alice',
    method: 'POST',
    path: `${A}/interrupt`,
    body: { prompt_id: { $ne: null } },
    expect: { status: 200 },
  },
  {
    name: 'object_info: unknown class',
    as: 'alice',
    method: 'GET',
    path: `${A}/object_info/NoSuchNode`,
    expect: { status: 200, check: (r) => (r.body.toString() === '{}' ? null : 'not {}') },
  },
  {
    name: 'object_info: class __proto__',
    as: 'alice',
    method: 'GET',
    path: `${A}/object_info/__proto__`,
    expect: {
      status: 200,
      check: (r) => (r.body.toString() === '{}' ? null : `not {}: ${r.body.toString().slice(0, 80)}`),
    },
  },
  {
    name: 'object_info: encoded traversal as class',
    as: 'alice',
    method: 'GET',
    path: `${A}/object_info/..%2F..%2Fetc%2Fpasswd`,
    expect: { status: 200, check: (r) => (r.body.toString() === '{}' ? null : 'not {}') },
  },
  {
    name: 'models: traversal as folder',
    as: 'alice',
    method: 'GET',
    path: `${A}/models/..%2F..%2Fetc`,
    expect: { status: 404 },
  },
  {
    name: 'experiment models: traversal as folder',
    as: 'alice',
    method: 'GET',
    path: `${A}/experiment/models/..%2F..`,
    expect: { status: 404 },
  },
  {
    name: 'internal files: bad directory type',
    as: 'alice',
    method: 'GET',
    path: '/alice/internal/files/..%2F..',
    expect: { status: 400, errorText: 'Invalid directory type' },
  },
  {
    name: 'view_metadata: traversal',
    as: 'alice',
    method: 'GET',
    path: `${A}/view_metadata/..%2F..%2Fetc?filename=..%2Fpasswd`,
    expect: { status: 404 },
  },
  {
    name: 'templates: traversal in module and name',
    as: 'alice',
    method: 'GET',
    path: '/alice/api/workflow_templates/..%2F..%2Fetc/passwd',
    expect: { status: 404 },
  },
  {
    name: 'system_stats works (sanity)',
    as: 'alice',
    method: 'GET',
    path: `${A}/system_stats`,
    expect: { status: 200 },
  },
  {
    name: 'raw ../ in the URL path',
    as: 'alice',
    method: 'GET',
    path: '/alice/api/../../../etc/passwd',
    expect: { status: 400, code: 'INVALID_PATH' },
  },
  {
    name: 'raw %2e%2e in the URL path',
    as: 'alice',
    method: 'GET',
    path: '/alice/%2e%2e/%2e%2e/etc/passwd',
    expect: { status: 400, code: 'INVALID_PATH' },
  },
  {
    name: 'query string of 64 KB',
    as: 'alice',
    method: 'GET',
    path: `${A}/queue?x=${big(64 * 1024)}`,
    expect: { status: 431 },
  },
];

/** Wrong methods on routes that exist: 405 with Allow. */
const methods: Case[] = [
  ['DELETE', `${A}/prompt`],
  ['PUT', `${A}/prompt`],
  ['PATCH', `${A}/queue`],
  ['DELETE', `${A}/history`],
  ['PUT', `${A}/interrupt`],
  ['DELETE', `${A}/jobs/cancel`],
  ['POST', `${A}/view`],
  ['POST', `${A}/object_info`],
  ['PUT', '/alice/upload/image'],
  ['DELETE', `${A}/settings`],
].map(([method, path]) => ({
  name: `wrong method ${method} ${path}`,
  as: 'alice' as const,
  method: method!,
  path: path!,
  body: method === 'DELETE' ? undefined : '{}',
  expect: {
    status: 405,
    code: 'METHOD_NOT_ALLOWED' as const,
    check: (r: { headers: Record<string, string> }) => (r.headers.allow ? null : 'no Allow header'),
  },
}));

/** Every path-attack form against /view, as the file name and as the subfolder. */
const view: Case[] = PATH_ATTACKS.flatMap((a) => {
  const asName: Case = {
    name: `view filename ${a.form}`,
    as: 'alice',
    method: 'GET',
    path: `${A}/view?filename=${a.value}&type=input`,
    expect: { status: a.code === 'INVALID_PATH' ? 400 : 404, code: a.code },
  };
  // As a subfolder, a lookalike is a folder that does not exist: 404 again.
  const asSub: Case = {
    name: `view subfolder ${a.form}`,
    as: 'alice',
    method: 'GET',
    path: `${A}/view?filename=x.png&subfolder=${a.value}&type=input`,
    expect: { status: a.code === 'INVALID_PATH' ? 400 : 404, code: a.code },
  };
  return [asName, asSub];
});

view.push(
  {
    name: 'view: no filename',
    as: 'alice',
    method: 'GET',
    path: `${A}/view`,
    expect: { status: 404, code: 'FILE_NOT_FOUND' },
  },
  {
    name: 'view: empty filename',
    as: 'alice',
    method: 'GET',
    path: `${A}/view?filename=`,
    expect: { status: 400, code: 'BAD_REQUEST' },
  },
  {
    name: 'view: bad type',
    as: 'alice',
    method: 'GET',
    path: `${A}/view?filename=x.png&type=secrets`,
    expect: { status: 400, code: 'BAD_REQUEST' },
  },
  {
    name: 'view: type with traversal',
    as: 'alice',
    method: 'GET',
    path: `${A}/view?filename=x.png&type=..%2F..%2Fbob`,
    expect: { status: 400, code: 'BAD_REQUEST' },
  },
  {
    name: 'view: annotation with traversal',
    as: 'alice',
    method: 'GET',
    path: `${A}/view?filename=x.png%20%5B..%2Finput%5D`,
    expect: { status: 400, code: 'INVALID_PATH' },
  },
  {
    name: 'view: own seeded upload (sanity)',
    as: 'alice',
    method: 'GET',
    path: (c) => `${A}/view?filename=${c.aliceFile}&type=input`,
    expect: { status: 200 },
  },
  {
    name: 'view: own upload through annotation',
    as: 'alice',
    method: 'GET',
    path: (c) => `${A}/view?filename=${c.aliceFile}%20%5Binput%5D`,
    expect: { status: 200 },
  },
  {
    name: 'view: repeated filename params',
    as: 'alice',
    method: 'GET',
    path: `${A}/view?filename=nope.png&filename=../../etc/passwd&type=input`,
    expect: { status: 404, code: 'FILE_NOT_FOUND' },
  },
);

export const participant: Family = {
  family: 'participant API',
  cases: [...isolation, ...signed, ...prompts, ...queueEtc, ...methods, ...view],
};
