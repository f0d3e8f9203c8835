/**
 * The per-user ComfyUI API at /<user>/(api/)…: prompt, queue, history, jobs, interrupt, view,
 * object_info and friends. Isolation (alice touching carol's or bob's things) is here too; the
 * run's invariant then checks carol's jobs are all still pending. The prompt cases live in
 * participant-prompts.ts, the queue, history, method and `/view` cases in participant-queue.ts.
 */
import type { Case, Family } from '../types.js';
import { prompts } from './participant-prompts.js';
import { methods, queueEtc, view } from './participant-queue.js';
import { goodPrompt } from './util.js';

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

export const participant: Family = {
  family: 'participant API',
  cases: [...isolation, ...signed, ...prompts, ...queueEtc, ...methods, ...view],
};
