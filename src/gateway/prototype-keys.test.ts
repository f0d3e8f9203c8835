/**
 * Keys a participant chooses (node ids, setting ids) that name Object.prototype members: they are
 * plain keys, never the prototype (found by the hostile-input corpus, test/hostile).
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startHarness, uploadEnv, type Harness } from '../../test/support/gateway-kit.js';

let h: Harness;
let A: string;

beforeAll(async () => {
  h = await startHarness();
  A = await h.addUser('user001');
  await uploadEnv(h);
});

afterAll(async () => {
  await h.close();
});

it('validates a node whose id is __proto__ like any other node', async () => {
  const r = await h.app.inject({
    method: 'POST',
    url: '/user001/api/prompt',
    headers: { authorization: A, 'content-type': 'application/json' },
    payload: '{"prompt":{"__proto__":{"class_type":"SaveImage","inputs":{}}}}',
  });
  expect(r.statusCode).toBe(400);
  const body = r.json<{ error: { type: string }; node_errors: Record<string, { class_type: string }> }>();
  expect(body.error.type).toBe('prompt_outputs_failed_validation');
  expect(Object.hasOwn(body.node_errors, '__proto__')).toBe(true);
  expect(body.node_errors['__proto__']?.class_type).toBe('SaveImage');
});

it.each(['constructor', 'toString', '__proto__', 'hasOwnProperty'])(
  'answers null for the unset setting %s',
  async (id) => {
    const r = await h.app.inject({
      method: 'GET',
      url: `/user001/api/settings/${id}`,
      headers: { authorization: A },
    });
    expect(r.statusCode).toBe(200);
    expect(r.body).toBe('null');
  },
);
