/**
 * Participants' own LoRAs on S3-compatible storage (a real s3rver): a good file is staged, moved
 * into the user's `loras/` and served to the worker holding a job; a refused one leaves no object
 * behind; deleting removes the object.
 */
import { createHash, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startS3Server, type S3ServerHandle } from '../../test/support/s3-server.js';
import { makeSafetensors } from '../../test/support/loras.js';
import { listen, startHarness, uploadEnv, type Harness } from '../../test/support/gateway-kit.js';
import { setProcessEnv } from '../../test/support/process-env.js';

let s3: S3ServerHandle;
let h: Harness;
let base: string;
let auth: string;
let restoreEnv: (() => void) | undefined;

beforeAll(async () => {
  s3 = await startS3Server({ buckets: ['files'] });
  restoreEnv = setProcessEnv(s3.env);
  h = await startHarness({
    FILES: 's3',
    S3_BUCKET: 'files',
    S3_PREFIX: `loras-${randomUUID()}/`,
    S3_ENDPOINT: s3.endpoint,
    S3_REGION: 'us-east-1',
    S3_FORCE_PATH_STYLE: 'true',
  });
  auth = await h.addUser('user001');
  await uploadEnv(h);
  base = await listen(h);
}, 60_000);

afterAll(async () => {
  await h?.close();
  restoreEnv?.();
  await s3?.stop();
});

function upload(name: string, body: Buffer) {
  const form = new FormData();
  form.append('file', new Blob([body]), name);
  return fetch(`${base}/user001/api/loras`, { method: 'POST', headers: { authorization: auth }, body: form });
}

const objects = async () => (await h.services.files.list('user001/loras/')).map((f) => f.key);

describe('participant LoRAs on S3', () => {
  it('stores, lists, refuses and deletes', async () => {
    const good = makeSafetensors({ tensors: 3, n: 50 });
    const r = await upload('s3 style.safetensors', good);
    expect(r.status).toBe(201);
    expect(await objects()).toEqual(['user001/loras/s3 style.safetensors']);
    const stored = await h.services.files.read('user001/loras/s3 style.safetensors');
    const hash = createHash('sha256');
    for await (const c of stored) hash.update(c as Buffer);
    expect(hash.digest('hex')).toBe(createHash('sha256').update(good).digest('hex'));

    const bad = await upload('bad.safetensors', good.subarray(0, good.length - 3));
    expect(bad.status).toBe(400);
    expect(await objects()).toEqual(['user001/loras/s3 style.safetensors']);

    const models = await fetch(`${base}/user001/api/models/loras`, { headers: { authorization: auth } });
    expect(await models.json()).toEqual(['s3 style.safetensors']);

    const del = await fetch(`${base}/user001/api/loras/s3%20style.safetensors`, {
      method: 'DELETE',
      headers: { authorization: auth },
    });
    expect(del.status).toBe(204);
    expect(await objects()).toEqual([]);
  });
});
