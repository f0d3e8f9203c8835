/**
 * Hostile input that used to answer 500 (issue 10): malformed multipart, names over 255 bytes,
 * file/folder name clashes, over-long URL parameters. Each must be a 4xx from the error table.
 */
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_PROMPT_NODES } from '../comfy/validate-prompt.js';
import {
  multipart,
  startHarness,
  tinyPng,
  upload,
  uploadEnv,
  type Harness,
} from '../../test/support/gateway-kit.js';

let h: Harness;
let A: string;
let I: string;

beforeAll(async () => {
  h = await startHarness();
  A = await h.addUser('user001');
  I = await h.addUser('teacher', 'instructor');
  await uploadEnv(h);
}, 60_000);

afterAll(async () => {
  await h.close();
});

const uploadImage = (fields: Record<string, string>, name: string, seed = 0) =>
  upload(h.app, A, '/user001/api/upload/image', fields, { name, body: tinyPng(seed) });
const userdata = (method: 'GET' | 'POST' | 'DELETE', path: string, payload = '{}') =>
  h.app.inject({
    method,
    url: `/user001/api/userdata/${path}`,
    headers: { authorization: A, 'content-type': 'application/json' },
    ...(method === 'POST' ? { payload } : {}),
  });

function expectError(r: { statusCode: number; json(): unknown }, status: number, code: string) {
  expect(r.statusCode).toBe(status);
  expect((r.json() as { error: { code: string } }).error.code).toBe(code);
}

describe('malformed multipart', () => {
  it.each([
    ['no boundary', 'multipart/form-data'],
    ['a wrong boundary', 'multipart/form-data; boundary=NOT-THE-ONE'],
    ['an empty quoted boundary', 'multipart/form-data; boundary=""'],
  ])('%s is a 400', async (_label, contentType) => {
    const m = multipart({ type: 'input' }, { name: 'x.png', body: tinyPng() });
    for (const url of ['/user001/upload/image', '/user001/api/upload/mask']) {
      const r = await h.app.inject({
        method: 'POST',
        url,
        headers: { authorization: A, 'content-type': contentType },
        payload: m.payload,
      });
      expectError(r, 400, 'BAD_REQUEST');
    }
  });

  it('a form cut off in its file part is a 400', async () => {
    const m = multipart({ type: 'input' }, { name: 'cut.png', body: tinyPng() });
    const r = await h.app.inject({
      method: 'POST',
      url: '/user001/api/upload/image',
      headers: { authorization: A, 'content-type': m.contentType },
      payload: m.payload.subarray(0, m.payload.length - 30),
    });
    expectError(r, 400, 'BAD_REQUEST');
  });
});

describe('names longer than 255 bytes', () => {
  const long = 'é'.repeat(127) + '.png'; // 131 characters, 258 bytes
  const emoji = '😀'.repeat(64) + '.json'; // 69 characters, 261 bytes

  it('uploads: INVALID_PATH for the file name and the subfolder', async () => {
    expectError(await uploadImage({}, long), 400, 'INVALID_PATH');
    expectError(await uploadImage({ subfolder: emoji }, 'ok.png'), 400, 'INVALID_PATH');
    // 254 bytes still fit.
    expect((await uploadImage({}, 'é'.repeat(125) + '.png')).statusCode).toBe(200);
  });

  it('userdata: INVALID_PATH', async () => {
    expectError(await userdata('POST', encodeURIComponent(emoji)), 400, 'INVALID_PATH');
    expectError(await userdata('POST', encodeURIComponent(`workflows/${emoji}`)), 400, 'INVALID_PATH');
    expect((await userdata('POST', encodeURIComponent('😀'.repeat(62) + '.json'))).statusCode).toBe(200);
  });
});

describe('file/folder name clashes', () => {
  it('userdata: a file where a folder would be, and a folder where a file would be', async () => {
    expect((await userdata('POST', 'clash1')).statusCode).toBe(200);
    expectError(await userdata('POST', 'clash1%2Finner.json'), 409, 'CONFLICT');
    expect((await userdata('POST', 'clash2%2Finner.json')).statusCode).toBe(200);
    expectError(await userdata('POST', 'clash2'), 409, 'CONFLICT');
    expectError(await userdata('POST', 'clash1/move/clash2'), 409, 'CONFLICT');
    expectError(await userdata('POST', 'clash2%2Finner.json/move/clash1%2Fx.json'), 409, 'CONFLICT');
    // Nothing was changed by the refused writes.
    expect((await userdata('GET', 'clash1')).statusCode).toBe(200);
    expect((await userdata('GET', 'clash2%2Finner.json')).statusCode).toBe(200);
  });

  it('uploads: into a subfolder named like a file, and a file named like a folder', async () => {
    expect((await uploadImage({}, 'taken.png', 1)).statusCode).toBe(200);
    const r = await uploadImage({ subfolder: 'taken.png' }, 'inner.png', 2);
    expectError(r, 409, 'CONFLICT');
    expect((await uploadImage({ subfolder: 'afolder' }, 'inner.png', 3)).statusCode).toBe(200);
    expectError(await uploadImage({}, 'afolder', 4), 409, 'CONFLICT');
    expectError(await uploadImage({ overwrite: 'true' }, 'afolder', 5), 409, 'CONFLICT');
  });
});

describe('over-long URLs', () => {
  it('a userdata path parameter longer than the router takes is 414 URI_TOO_LONG as JSON', async () => {
    for (const method of ['POST', 'DELETE'] as const) {
      const r = await userdata(method, 'a'.repeat(4000));
      expectError(r, 414, 'URI_TOO_LONG');
    }
  });

  it('long paths that fit are matched by their route (not a 414 or a frontend 404)', async () => {
    const path = encodeURIComponent(`workflows/${'x'.repeat(200)}/${'y'.repeat(200)}.json`);
    expect((await userdata('POST', path)).statusCode).toBe(200);
    expect((await userdata('GET', path)).statusCode).toBe(200);
    expect((await userdata('DELETE', path)).statusCode).toBe(204);
  });

  it('a badly encoded URL is a JSON 400', async () => {
    expectError(await userdata('DELETE', '%E0%A4%A'), 400, 'BAD_REQUEST');
  });
});

describe('deep JSON and long prompt chains', () => {
  const deep = (n: number) => '['.repeat(n) + ']'.repeat(n);
  const post = (url: string, payload: string, auth = A) =>
    h.app.inject({
      method: 'POST',
      url,
      headers: { authorization: auth, 'content-type': 'application/json' },
      payload,
    });

  /** EmptyImage → n × ImageInvert → SaveImage. */
  function chain(n: number): Record<string, unknown> {
    const p: Record<string, unknown> = {
      '0': { class_type: 'EmptyImage', inputs: { width: 8, height: 8, batch_size: 1, color: 0 } },
    };
    for (let i = 1; i <= n; i++)
      p[String(i)] = { class_type: 'ImageInvert', inputs: { image: [String(i - 1), 0] } };
    p.save = { class_type: 'SaveImage', inputs: { images: [String(n), 0], filename_prefix: 'x' } };
    return p;
  }

  it("100,000 nested arrays: a 400 naming the nesting, in ComfyUI's shape on /prompt", async () => {
    const r = await post(
      '/user001/api/prompt',
      `{"prompt": {"1": {"class_type": "SaveImage", "inputs": {"x": ${deep(100_000)}}}}}`,
    );
    expect(r.statusCode).toBe(400);
    expect(r.json().error.type).toBe('invalid_json');
    expect(r.json().error.details).toMatch(/nested more than \d+ levels/);
    expect(r.json().node_errors).toEqual({});
  });

  it('100,000 nested arrays: INVALID_JSON on settings, userdata-free JSON routes and /api/v1', async () => {
    expectError(await post('/user001/api/settings', `{"a": ${deep(100_000)}}`), 400, 'INVALID_JSON');
    expectError(await post('/user001/api/settings/x', deep(100_000)), 400, 'INVALID_JSON');
    const jobs = await post(
      '/api/v1/jobs',
      `{"user": "user001", "prompt": {"1": {"class_type": "SaveImage", "inputs": {"x": ${deep(100_000)}}}}}`,
      I,
    );
    expectError(jobs, 400, 'INVALID_JSON');
    // Ordinary nesting still parses (a workflow with subgraphs nests about 15 levels).
    expect((await post('/user001/api/settings/x', deep(60))).statusCode).toBe(200);
  });

  it('a node id "__proto__" is just a node id (found by fuzzing: was a 500)', async () => {
    const r = await post(
      '/user001/api/prompt',
      '{"prompt": {"__proto__": {"class_type": "PreviewAudio", "inputs": {}}}}',
    );
    expect(r.statusCode).toBe(400);
    expect(r.json().error.type).toBe('prompt_outputs_failed_validation');
    expect(Object.keys(r.json().node_errors)).toEqual(['__proto__']);
  });

  it(`more than ${MAX_PROMPT_NODES} nodes on /<user>/api/prompt: ComfyUI-shaped 400`, async () => {
    const r = await post('/user001/api/prompt', JSON.stringify({ prompt: chain(MAX_PROMPT_NODES) }));
    expect(r.statusCode).toBe(400);
    expect(r.json().error).toMatchObject({ type: 'invalid_prompt', message: 'Prompt too large' });
    expect(r.json().node_errors).toEqual({});
  });

  it('a chain of ~5,000 linked nodes: a validation error (RecursionError, as ComfyUI), not a 500', async () => {
    const r = await post('/user001/api/prompt', JSON.stringify({ prompt: chain(MAX_PROMPT_NODES - 2) }));
    expect(r.statusCode).toBe(400);
    expect(r.json().error.type).toBe('prompt_outputs_failed_validation');
    const errors = Object.values(r.json().node_errors as Record<string, { errors: { details: string }[] }>);
    expect(errors.flatMap((e) => e.errors.map((x) => x.details))).toContain(
      'maximum recursion depth exceeded',
    );
    // A short chain is fine.
    const ok = await post('/user001/api/prompt', JSON.stringify({ prompt: chain(50) }));
    expect(ok.statusCode).toBe(200);
  });
});

describe('body limits', () => {
  const post = (url: string, payload: string | Buffer, contentType = 'application/json') =>
    h.app.inject({
      method: 'POST',
      url,
      headers: { authorization: A, 'content-type': contentType },
      payload,
    });
  const MB = 1024 * 1024;

  it('settings: a body over SETTINGS_LIMIT (1 MB) is 413, and so is one that would grow the file past it', async () => {
    expectError(
      await post('/user001/api/settings', JSON.stringify({ big: 'x'.repeat(MB) })),
      413,
      'PAYLOAD_TOO_LARGE',
    );
    expectError(
      await post('/user001/api/settings/big', JSON.stringify('x'.repeat(MB))),
      413,
      'PAYLOAD_TOO_LARGE',
    );
    expect((await post('/user001/api/settings/a', JSON.stringify('a'.repeat(0.6 * MB)))).statusCode).toBe(
      200,
    );
    const grow = await post('/user001/api/settings/b', JSON.stringify('b'.repeat(0.6 * MB)));
    expectError(grow, 413, 'PAYLOAD_TOO_LARGE');
    const settings = await h.app.inject({
      method: 'GET',
      url: '/user001/api/settings',
      headers: { authorization: A },
    });
    expect(Object.keys(settings.json())).toContain('a');
    expect(Object.keys(settings.json())).not.toContain('b');
  });

  it('a settings file made larger than the limit behind its back is not read into memory', async () => {
    const file = `{"huge": "${'h'.repeat(3 * MB)}"}`;
    expect((await post('/user001/api/userdata/comfy.settings.json', file)).statusCode).toBe(200);
    const r = await h.app.inject({
      method: 'GET',
      url: '/user001/api/settings',
      headers: { authorization: A },
    });
    expect(r.statusCode).toBe(200);
    expect(r.json()).toEqual({});
    // The next save replaces it with something within bounds.
    expect((await post('/user001/api/settings/c', '"c"')).statusCode).toBe(200);
  });

  it('userdata files over USERDATA_LIMIT (20 MB) are 413', async () => {
    const r = await post('/user001/api/userdata/workflows%2Fbig.json', Buffer.alloc(20 * MB + 1, 0x20));
    expectError(r, 413, 'PAYLOAD_TOO_LARGE');
  });

  it('userdata bodies are streamed: over the limit without Content-Length is 413 too, and leaves no file', async () => {
    const chunks = (n: number) =>
      Readable.from(
        (function* () {
          for (let i = 0; i < n; i++) yield Buffer.alloc(MB, 0x20);
        })(),
      );
    const over = await h.app.inject({
      method: 'POST',
      url: '/user001/api/userdata/workflows%2Fstreamed.json',
      headers: { authorization: A, 'content-type': 'application/json' },
      payload: chunks(21),
    });
    expectError(over, 413, 'PAYLOAD_TOO_LARGE');
    expect(over.headers.connection).toBe('close');
    expect((await userdata('GET', 'workflows%2Fstreamed.json')).statusCode).toBe(404);
    const ok = await h.app.inject({
      method: 'POST',
      url: '/user001/api/userdata/workflows%2Fstreamed.json',
      headers: { authorization: A, 'content-type': 'application/json' },
      payload: chunks(3),
    });
    expect(ok.statusCode).toBe(200);
    const back = await userdata('GET', 'workflows%2Fstreamed.json');
    expect(back.rawPayload.length).toBe(3 * MB);
  });

  it('control routes take small bodies only', async () => {
    const ids = Array.from({ length: 10_000 }, () => '00000000-0000-4000-8000-000000000000');
    for (const url of ['/user001/api/queue', '/user001/api/history', '/user001/api/interrupt'])
      expectError(await post(url, JSON.stringify({ delete: ids })), 413, 'PAYLOAD_TOO_LARGE');
  });
});
