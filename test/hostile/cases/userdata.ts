/** `/<user>/api/userdata/…`, `/v2/userdata`, `/settings`: the participant's saved workflows and settings. */
import type { Case, Family } from '../types.js';
import { PATH_ATTACKS, big, deepJson, deepObject } from './util.js';

const U = '/alice/api/userdata';

/**
 * Path attacks as the `{file}` parameter (the frontend encodes `/` as %2F). The server decodes the
 * parameter, then once more when a `%` remains (as ComfyUI does), so `%252e%252e` is `..` here.
 */
const fileParam: Case[] = PATH_ATTACKS.flatMap((a) => {
  const v = a.value.replace(/\//g, '%2F');
  const bad = a.code === 'INVALID_PATH' || a.form.startsWith('%252e');
  // Not valid UTF-8 once decoded: the router refuses the path parameter itself.
  const badUtf8 = a.form.startsWith('overlong');
  // A lookalike is a plain (missing) name here: ComfyUI's empty 404.
  const missing = {
    status: 404,
    check: (r: { body: Buffer }) => (r.body.length === 0 ? null : 'body not empty'),
  };
  const refused = { status: 400, code: 'INVALID_PATH' as const };
  const readExpect = badUtf8 ? { status: 400, code: 'BAD_REQUEST' as const } : bad ? refused : missing;
  const cases: Case[] = [
    { name: `userdata GET ${a.form}`, as: 'alice', method: 'GET', path: `${U}/${v}`, expect: readExpect },
    {
      name: `userdata DELETE ${a.form}`,
      as: 'alice',
      method: 'DELETE',
      path: `${U}/${v}`,
      expect: readExpect,
    },
  ];
  if (bad) {
    cases.push(
      {
        name: `userdata POST ${a.form}`,
        as: 'alice',
        method: 'POST',
        path: `${U}/${v}`,
        body: '{}',
        expect: refused,
      },
      {
        name: `userdata move to ${a.form}`,
        as: 'alice',
        method: 'POST',
        path: `${U}/workflows%2Fnope.json/move/${v}`,
        expect: refused,
      },
    );
  }
  return cases;
});

const misc: Case[] = [
  {
    name: 'userdata: alice writes into bob',
    as: 'alice',
    method: 'POST',
    path: '/bob/api/userdata/workflows%2Fx.json',
    body: '{}',
    expect: { status: 403, code: 'FORBIDDEN' },
  },
  {
    name: 'userdata: alice lists bob',
    as: 'alice',
    method: 'GET',
    path: '/bob/api/userdata?dir=workflows',
    expect: { status: 403, code: 'FORBIDDEN' },
  },
  {
    name: 'userdata: anonymous read',
    method: 'GET',
    path: `${U}/comfy.settings.json`,
    expect: { status: 401, code: 'UNAUTHORIZED' },
  },
  {
    name: 'userdata: write works (sanity)',
    as: 'alice',
    method: 'POST',
    path: `${U}/workflows%2Fcorpus.json`,
    body: '{"nodes":[]}',
    expect: { status: 200 },
  },
  {
    name: 'userdata: list without dir',
    as: 'alice',
    method: 'GET',
    path: U,
    expect: { status: 400, text: 'Directory not provided' },
  },
  {
    name: 'userdata: list dir traversal',
    as: 'alice',
    method: 'GET',
    path: `${U}?dir=../../bob`,
    expect: { status: 400, code: 'INVALID_PATH' },
  },
  {
    name: 'userdata: list dir absolute',
    as: 'alice',
    method: 'GET',
    path: `${U}?dir=/etc`,
    expect: { status: 400, code: 'INVALID_PATH' },
  },
  {
    name: 'userdata: list dir that does not exist',
    as: 'alice',
    method: 'GET',
    path: `${U}?dir=nope`,
    expect: { status: 404, text: 'Directory not found' },
  },
  {
    name: 'v2 userdata: traversal',
    as: 'alice',
    method: 'GET',
    path: '/alice/api/v2/userdata?path=..%2F..%2Fbob',
    expect: { status: 400, text: 'Invalid path requested' },
  },
  {
    name: 'v2 userdata: double-encoded traversal',
    as: 'alice',
    method: 'GET',
    path: '/alice/api/v2/userdata?path=%252e%252e%252fbob',
    expect: { status: 400, text: 'Invalid path requested' },
  },
  {
    name: 'v2 userdata: NUL',
    as: 'alice',
    method: 'GET',
    path: '/alice/api/v2/userdata?path=a%00b',
    expect: { status: 400, text: 'Invalid path requested' },
  },
  {
    name: 'userdata: raw ../ in the URL',
    as: 'alice',
    method: 'POST',
    path: `${U}/../../../bob/userdata/x.json`,
    body: '{}',
    expect: { status: 404, code: 'NOT_FOUND' },
  },
  {
    name: 'userdata: 2,000-character path',
    as: 'alice',
    method: 'POST',
    path: `${U}/${'d%2F'.repeat(1000)}x.json`,
    body: '{}',
    expect: { status: 400, code: 'INVALID_PATH' },
  },
  {
    name: 'userdata: 20,000-character path',
    as: 'alice',
    method: 'GET',
    path: `${U}/${'abcdefghi%2F'.repeat(2000)}x.json`,
    expect: { status: 431 },
  },
  {
    name: 'userdata: body over USERDATA_LIMIT',
    as: 'alice',
    method: 'POST',
    path: `${U}/workflows%2Fhuge.json`,
    body: () => big(3 * 1024 * 1024),
    expect: { status: 413, code: 'PAYLOAD_TOO_LARGE' },
  },
  {
    name: 'userdata: overwrite=false on an existing file',
    as: 'alice',
    method: 'POST',
    path: `${U}/comfy.settings.json?overwrite=false`,
    body: '{}',
    expect: { status: 409, text: 'File already exists' },
  },
  {
    name: 'userdata: file where a folder is (collision)',
    as: 'alice',
    method: 'POST',
    path: `${U}/workflows`,
    body: '{}',
    expect: { status: 409, code: 'CONFLICT' },
  },
  {
    name: 'userdata: folder where a file is (collision)',
    as: 'alice',
    method: 'POST',
    path: `${U}/comfy.settings.json%2Finside.json`,
    body: '{}',
    expect: { status: 409, code: 'CONFLICT' },
  },
  {
    name: 'userdata: move onto a folder (collision)',
    as: 'alice',
    method: 'POST',
    path: `${U}/workflows%2Fcorpus-move.json/move/workflows`,
    expect: { status: 404 },
  },
  {
    name: 'userdata: move a missing file',
    as: 'alice',
    method: 'POST',
    path: `${U}/workflows%2Fmissing.json/move/workflows%2Fb.json`,
    expect: { status: 404 },
  },
  {
    name: 'userdata: move to bob via traversal',
    as: 'alice',
    method: 'POST',
    path: `${U}/comfy.settings.json/move/..%2F..%2F..%2Fbob%2Fuserdata%2Fx.json`,
    expect: { status: 400, code: 'INVALID_PATH' },
  },
  {
    name: 'userdata: delete of a missing file',
    as: 'alice',
    method: 'DELETE',
    path: `${U}/workflows%2Fnever-there.json`,
    expect: { status: 404 },
  },
  {
    name: 'userdata: svg served as a download, never inline',
    as: 'alice',
    method: 'GET',
    path: `${U}/comfy.settings.json`,
    expect: {
      status: 200,
      check: (r) => (r.headers['x-content-type-options'] === 'nosniff' ? null : 'no nosniff'),
    },
  },
  {
    name: 'users: POST creates nobody',
    as: 'alice',
    method: 'POST',
    path: '/alice/api/users',
    body: { username: 'root' },
    expect: { status: 400, errorText: 'instructor' },
  },
];

const settings: Case[] = [
  {
    name: 'settings: POST not JSON',
    as: 'alice',
    method: 'POST',
    path: '/alice/api/settings',
    body: '{nope',
    expect: { status: 400, code: 'INVALID_JSON' },
  },
  {
    name: 'settings: POST a list',
    as: 'alice',
    method: 'POST',
    path: '/alice/api/settings',
    body: '[1]',
    expect: { status: 400, code: 'VALIDATION_FAILED' },
  },
  {
    name: 'settings: POST __proto__ key',
    as: 'alice',
    method: 'POST',
    path: '/alice/api/settings',
    body: '{"__proto__":{"polluted":true},"Comfy.X":1}',
    expect: { status: 200 },
  },
  {
    name: 'settings: read back shows no pollution',
    as: 'alice',
    method: 'GET',
    path: '/alice/api/settings/polluted',
    expect: {
      status: 200,
      check: (r) => (r.body.toString() === 'null' ? null : `polluted: ${r.body.toString()}`),
    },
  },
  {
    name: 'settings: POST nested 100,000 deep',
    as: 'alice',
    method: 'POST',
    path: '/alice/api/settings',
    body: `{"a":${deepJson(100_000)}}`,
    expect: { status: 400, code: 'INVALID_JSON' },
  },
  {
    name: 'settings/:id: value nested 100,000 deep',
    as: 'alice',
    method: 'POST',
    path: '/alice/api/settings/Comfy.Deep',
    body: deepObject(100_000),
    expect: { status: 400, code: 'INVALID_JSON' },
  },
  {
    name: 'settings/:id: empty body',
    as: 'alice',
    method: 'POST',
    path: '/alice/api/settings/Comfy.Empty',
    body: '',
    expect: { status: 400, code: 'INVALID_JSON' },
  },
  {
    name: 'settings/:id: id __proto__',
    as: 'alice',
    method: 'POST',
    path: '/alice/api/settings/__proto__',
    body: '{"polluted":true}',
    expect: { status: 200 },
  },
  {
    name: 'settings/:id: GET constructor',
    as: 'alice',
    method: 'GET',
    path: '/alice/api/settings/constructor',
    expect: {
      status: 200,
      check: (r) => (r.body.toString() === 'null' ? null : `got ${r.body.toString().slice(0, 60)}`),
    },
  },
  {
    name: 'settings/:id: id of 5,000 characters',
    as: 'alice',
    method: 'POST',
    path: `/alice/api/settings/${'k'.repeat(5000)}`,
    body: '1',
    expect: { status: 414, code: 'URI_TOO_LONG' },
  },
  {
    name: 'settings: one value over BODY_LIMIT',
    as: 'alice',
    method: 'POST',
    path: '/alice/api/settings/Comfy.Big',
    body: () => JSON.stringify(big(3 * 1024 * 1024)),
    expect: { status: 413, code: 'PAYLOAD_TOO_LARGE' },
  },
  {
    name: 'settings: alice writes bob settings',
    as: 'alice',
    method: 'POST',
    path: '/bob/api/settings',
    body: '{"x":1}',
    expect: { status: 403, code: 'FORBIDDEN' },
  },
];

/**
 * The settings file has a size cap (SETTINGS_LIMIT, 3 MiB in this run): values of 1 MiB, each well
 * under BODY_LIMIT, are taken until the file would pass it; then 413, and the file stays as it was.
 */
const settingsCap: Case[] = Array.from({ length: 5 }, (_, i) => ({
  name: `settings: growing past the size cap, value ${i + 1} of 5 (1 MiB each)`,
  as: 'alice' as const,
  method: 'POST',
  path: `/alice/api/settings/Comfy.Grow${i}`,
  body: () => JSON.stringify(big(1024 * 1024)),
  expect: i < 2 ? { status: 200 } : { status: 413, code: 'PAYLOAD_TOO_LARGE' as const },
}));

export const userdata: Family = {
  family: 'userdata and settings',
  cases: [...fileParam, ...misc, ...settings],
};
/** Order matters (the file grows): run one after another. */
export const settingsGrowth: Family = { family: 'settings size cap', cases: settingsCap, serial: true };
