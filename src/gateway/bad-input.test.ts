/**
 * Bad input: traversal in every path-taking route, oversize uploads, malformed bodies and every
 * ComfyUI prompt error type. Clear 4xx answers, never a 500, nothing written outside the user's
 * own space.
 */
import { existsSync, readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { modelFreePrompt } from '../../test/support/prompts.js';
import {
  startHarness,
  storedFiles,
  tinyPng,
  upload,
  uploadEnv,
  type Harness,
} from '../../test/support/gateway-kit.js';

let h: Harness;
let A: string;

beforeAll(async () => {
  h = await startHarness({ UPLOAD_LIMIT: '4kb' });
  A = await h.addUser('user001');
  await h.addUser('user002');
  await uploadEnv(h);
  await upload(h.app, A, '/user001/api/upload/image', { type: 'input' }, { name: 'ok.png', body: tinyPng() });
}, 60_000);

afterAll(async () => {
  await h.close();
});

const get = (url: string) => h.app.inject({ method: 'GET', url, headers: { authorization: A } });
const post = (url: string, payload: string | Buffer, contentType = 'application/json') =>
  h.app.inject({ method: 'POST', url, headers: { authorization: A, 'content-type': contentType }, payload });

const TRAVERSALS = [
  '../x',
  '../../etc/passwd',
  '/etc/passwd',
  'a/../../b',
  '..\\..\\x',
  'a\\b',
  'a\u0000b',
  'C:/windows/x',
  '..',
];

describe('bad input', () => {
  it('refuses traversal in /view', async () => {
    for (const t of TRAVERSALS) {
      for (const q of [
        `filename=${encodeURIComponent(t)}&type=input`,
        `filename=ok.png&subfolder=${encodeURIComponent(t)}&type=input`,
      ]) {
        const r = await get(`/user001/api/view?${q}`);
        expect([400, 404], q).toContain(r.statusCode);
        expect(r.statusCode, q).not.toBe(200);
        expect(r.headers['content-type'], q).toMatch(/json/);
      }
    }
    expect((await get('/user001/api/view?filename=%2e%2e%2f%2e%2e%2fetc%2fpasswd')).statusCode).toBe(400);
    expect((await get('/user001/api/view?filename=ok.png&type=bogus')).statusCode).toBe(400);
    expect((await get('/user001/api/view?filename=&type=input')).statusCode).toBe(400);
    expect((await get('/user001/api/view?type=input')).statusCode).toBe(404);
    expect((await get('/user001/api/view?filename=ok.png&type=input')).statusCode).toBe(200);
  });

  it("refuses traversal in uploads and writes nothing outside the user's space", async () => {
    const before = await storedFiles(h);
    for (const t of TRAVERSALS.filter((x) => x !== '..\\..\\x' || true)) {
      const sub = await upload(
        h.app,
        A,
        '/user001/api/upload/image',
        { type: 'input', subfolder: t },
        { name: 'x.png', body: tinyPng() },
      );
      expect(sub.statusCode, `subfolder ${JSON.stringify(t)}`).toBe(400);
    }
    for (const name of ['../x.png', '..\\x.png', '/abs.png', 'a/../../x.png', '..']) {
      // The multipart parser keeps only the base name of a file name; what is left must be safe.
      const r = await upload(
        h.app,
        A,
        '/user001/api/upload/image',
        { type: 'input' },
        { name, body: tinyPng(5) },
      );
      expect([200, 400], `filename ${name}`).toContain(r.statusCode);
      if (r.statusCode === 200) expect(r.json().name).not.toMatch(/\/|\\|^\.\.$/);
    }
    expect(
      (
        await upload(
          h.app,
          A,
          '/user001/api/upload/image',
          { type: 'bogus' },
          { name: 'x.png', body: tinyPng() },
        )
      ).statusCode,
    ).toBe(400);
    const mask = await upload(
      h.app,
      A,
      '/user001/api/upload/mask',
      {
        type: 'input',
        original_ref: JSON.stringify({ filename: '../../user002/input/x.png', type: 'input' }),
      },
      { name: 'm.png', body: tinyPng() },
    );
    expect(mask.statusCode).toBe(400);
    expect(
      (
        await upload(
          h.app,
          A,
          '/user001/api/upload/mask',
          { original_ref: 'not json' },
          { name: 'm.png', body: tinyPng() },
        )
      ).statusCode,
    ).toBe(400);
    const notMultipart = await post('/user001/api/upload/image', '{"image": "x"}');
    expect(notMultipart.statusCode).toBeGreaterThanOrEqual(400);
    expect(notMultipart.statusCode).toBeLessThan(500);
    const added = (await storedFiles(h)).filter((f) => !before.includes(f));
    for (const f of added)
      expect(f.startsWith('user001/input/') && !f.slice('user001/input/'.length).includes('/')).toBe(true);
  });

  it('answers 413 for uploads over UPLOAD_LIMIT and keeps nothing of them', async () => {
    const before = await storedFiles(h);
    const big = Buffer.alloc(20 * 1024, 7);
    const r = await upload(
      h.app,
      A,
      '/user001/api/upload/image',
      { type: 'input' },
      { name: 'big.png', body: big },
    );
    expect(r.statusCode).toBe(413);
    expect(r.json().error.code).toBe('PAYLOAD_TOO_LARGE');
    // The limit is in the message: what the participant (or instructor) can act on.
    expect(r.json().error.message).toContain('4 KB');
    expect(r.json().error.message).toContain('UPLOAD_LIMIT');
    expect(await storedFiles(h)).toEqual(before);
  });

  it('refuses a declared body far over UPLOAD_LIMIT before reading it, and closes the connection', async () => {
    const before = await storedFiles(h);
    const r = await h.app.inject({
      method: 'POST',
      url: '/user001/api/upload/image',
      headers: {
        authorization: A,
        'content-type': 'multipart/form-data; boundary=BOUND',
        'content-length': String(50 * 1024 * 1024),
      },
      payload: '--BOUND\r\n',
    });
    expect(r.statusCode).toBe(413);
    expect(r.json().error.message).toContain('4 KB');
    expect(r.headers.connection).toBe('close');
    expect(await storedFiles(h)).toEqual(before);
  });

  it('refuses traversal in userdata and settings', async () => {
    const before = await storedFiles(h);
    const bad = [
      '..%2F..%2Fuser002%2Fuserdata%2Fx.json',
      '%252e%252e%252fx.json',
      '%2Fetc%2Fpasswd',
      'a%5C..%5C..%5Cx.json',
      'x%00.json',
      '%2E%2E%2Fx.json',
    ];
    for (const f of bad) {
      for (const [method, url] of [
        ['GET', `/user001/api/userdata/${f}`],
        ['POST', `/user001/api/userdata/${f}`],
        ['DELETE', `/user001/api/userdata/${f}`],
        ['POST', `/user001/api/userdata/${f}/move/ok.json`],
        ['POST', `/user001/api/userdata/settings.json/move/${f}`],
      ] as const) {
        const r = await h.app.inject({
          method,
          url,
          headers: { authorization: A },
          payload: method === 'POST' ? '{}' : undefined,
        });
        expect([400, 404], `${method} ${url}`).toContain(r.statusCode);
      }
    }
    for (const d of ['..', '../user002', '/etc', 'a%5Cb', '%00']) {
      expect((await get(`/user001/api/userdata?dir=${d}`)).statusCode, d).toBe(400);
      expect((await get(`/user001/api/v2/userdata?path=${d}`)).statusCode, d).toBe(400);
    }
    expect((await get('/user001/api/userdata')).statusCode).toBe(400);
    expect(await storedFiles(h)).toEqual(before);
  });

  it('answers malformed bodies with 400, never 500', async () => {
    for (const [url, body] of [
      ['/user001/api/prompt', '{not json'],
      ['/user001/api/prompt', '[1,2]'],
      ['/user001/api/prompt', '"str"'],
      ['/user001/api/queue', '{not json'],
      ['/user001/api/queue', '{"delete": "abc"}'],
      ['/user001/api/history', '[]'],
      ['/user001/api/history', '{"delete": 5}'],
      ['/user001/api/settings', '[1]'],
      ['/user001/api/settings', 'nope'],
      ['/user001/api/settings/x', ''],
      ['/user001/api/jobs/cancel', '{"job_ids": [1, {}]}'],
      ['/user001/api/jobs/cancel', 'nope'],
      ['/user001/comfy-multi/broadcast', '{"message": 1}'],
    ] as const) {
      const r = await post(url, body);
      expect(r.statusCode, `${url} ${body}`).toBeGreaterThanOrEqual(400);
      expect(r.statusCode, `${url} ${body}`).toBeLessThan(500);
    }
    const badJson = await post('/user001/api/prompt', '{not json');
    expect(badJson.json().error.type).toBe('invalid_json');
    for (const q of ['max_items=abc', 'offset=x'])
      expect((await get(`/user001/api/history?${q}`)).statusCode).toBe(400);
    for (const q of ['status=bogus', 'limit=0', 'limit=x', 'sort_by=x', 'sort_order=up', 'offset=x']) {
      const r = await get(`/user001/api/jobs?${q}`);
      expect(r.statusCode, q).toBe(400);
      expect(typeof r.json().error).toBe('string');
    }
    // /interrupt takes anything, as ComfyUI does.
    expect((await post('/user001/api/interrupt', '{not json')).statusCode).toBe(200);
    expect(
      (
        await post(
          '/user001/api/prompt',
          JSON.stringify({ prompt: modelFreePrompt(), prompt_id: 'NOT-A-UUID' }),
        )
      ).json().error.type,
    ).toBe('invalid_prompt_id');
  });
});

const FIXTURE = new URL('../../../shared/fixtures/comfyui-v0.3.64/prompt_errors.json', import.meta.url);

describe.skipIf(!existsSync(FIXTURE))('invalid prompts (recorded ComfyUI v0.3.64 answers)', () => {
  interface Case {
    case: string;
    request: { body: unknown };
    response: {
      status: number;
      body: { error: { type: string }; node_errors: Record<string, { errors: { type: string }[] }> };
    };
  }
  const cases = existsSync(FIXTURE)
    ? (JSON.parse(readFileSync(FIXTURE, 'utf8')) as { cases: Case[] }).cases
    : [];

  it.each(cases.filter((c) => c.case !== 'f_malformed_json').map((c) => [c.case, c] as const))(
    '%s',
    async (_name, c) => {
      const r = await post('/user001/api/prompt', JSON.stringify(c.request.body));
      expect(r.statusCode).toBe(c.response.status);
      const body = r.json();
      expect(body.error.type).toBe(c.response.body.error.type);
      const errorTypes = (b: Case['response']['body']) =>
        Object.fromEntries(Object.entries(b.node_errors).map(([id, e]) => [id, e.errors.map((x) => x.type)]));
      expect(errorTypes(body)).toEqual(errorTypes(c.response.body));
      if (!['g_missing_link_source'].includes(c.case)) {
        // Exact bodies, as ComfyUI sends them (tracebacks aside).
        expect(body).toEqual(c.response.body);
      }
    },
  );

  it('answers malformed JSON with 400 (ComfyUI: 500)', async () => {
    const r = await post('/user001/api/prompt', '{"prompt": ');
    expect(r.statusCode).toBe(400);
  });
});
