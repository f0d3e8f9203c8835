/**
 * Participants' own LoRAs through the gateway, over a real socket as a browser or script sends
 * them: a good `.safetensors` file is stored and shows in that participant's loader lists and
 * `/models/loras` only, and their prompts may name it; anything that is not a safetensors file
 * (pickles, wrong header length, broken JSON, offsets past the end) is refused with LORA_INVALID
 * and nothing is kept; per-file limit and per-participant quota give 413 with the limit named.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  listen,
  startHarness,
  storedFiles,
  testSnapshot,
  uploadEnv,
  type Harness,
} from '../../test/support/gateway-kit.js';
import type { EnvSnapshot } from '../worker/protocol.js';
import { makeSafetensors } from '../../test/support/loras.js';
import { createHash } from 'node:crypto';

/**
 * A worker with one checkpoint and one shared LoRA, whose ComfyUI also lists a participant's LoRA
 * another job left in the agents' private folder (an older agent did not hide it).
 */
function snapshot(): EnvSnapshot {
  const s = testSnapshot();
  const info = structuredClone(s.objectInfo) as Record<
    string,
    { input: { required: Record<string, unknown[]> } }
  >;
  const loras = ['_users/0123456789abcdef/leak.safetensors', 'shared-style.safetensors'];
  info.CheckpointLoaderSimple!.input.required.ckpt_name![0] = ['sd15.safetensors'];
  info.LoraLoader!.input.required.lora_name![0] = loras;
  info.LoraLoaderModelOnly!.input.required.lora_name![0] = loras;
  return { ...s, objectInfo: info, models: { ...s.models, loras } };
}

const API_TOKEN = 'ci-secret-api-token-loras-123';
let h: Harness;
let base: string;
const auth: Record<string, string> = {};

beforeAll(async () => {
  // Files of about 2 kB: the limit lets one of 4 kB in, the quota two of them.
  h = await startHarness({ LORA_UPLOAD_LIMIT: '5kb', LORA_QUOTA: '9kb', API_TOKENS: `ci:${API_TOKEN}` });
  auth.user001 = await h.addUser('user001');
  auth.user002 = await h.addUser('user002');
  auth.teacher = await h.addUser('teacher', 'instructor');
  await uploadEnv(h, snapshot());
  base = await listen(h);
}, 60_000);

afterAll(async () => {
  await h.close();
});

function upload(user: string, name: string, body: Buffer) {
  const form = new FormData();
  form.append('file', new Blob([body]), name);
  return fetch(`${base}/${user}/api/loras`, {
    method: 'POST',
    headers: { authorization: auth[user]! },
    body: form,
  });
}

async function json(path: string, user: string): Promise<unknown> {
  const r = await fetch(`${base}/${user}/${path}`, { headers: { authorization: auth[user]! } });
  expect(r.status).toBe(200);
  return r.json();
}

/** The options of one combo input as the frontend reads them. */
async function choices(user: string, cls: string, input = 'lora_name'): Promise<string[]> {
  const info = (await json(`api/object_info`, user)) as Record<
    string,
    { input: { required: Record<string, unknown[]> } }
  >;
  const spec = info[cls]!.input.required[input]!;
  return (Array.isArray(spec[0]) ? spec[0] : (spec[1] as { options: string[] }).options) as string[];
}

function loraPrompt(lora: string): Record<string, unknown> {
  return {
    '1': { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: 'sd15.safetensors' } },
    '2': {
      class_type: 'LoraLoaderModelOnly',
      inputs: { model: ['1', 0], lora_name: lora, strength_model: 0.8 },
    },
    '3': { class_type: 'PreviewAny', inputs: { source: ['2', 0] } },
  };
}

function submit(user: string, prompt: Record<string, unknown>) {
  return fetch(`${base}/${user}/api/prompt`, {
    method: 'POST',
    headers: { authorization: auth[user]!, 'content-type': 'application/json' },
    body: JSON.stringify({ prompt, client_id: 'test' }),
  });
}

const loraKeys = async () => (await storedFiles(h)).filter((k) => k.split('/')[1] === 'loras');

describe('participant LoRAs', () => {
  const good = makeSafetensors({ tensors: 4, n: 100, metadata: { ss_network_dim: '4' } });

  it('stores a good file and lists it in the owner’s loaders only', async () => {
    const r = await upload('user001', 'my style.safetensors', good);
    expect(r.status).toBe(201);
    const entry = (await r.json()) as { name: string; size: number; sha256: string };
    expect(entry).toMatchObject({
      name: 'my style.safetensors',
      size: good.length,
      sha256: createHash('sha256').update(good).digest('hex'),
    });
    expect(await json('api/loras', 'user001')).toMatchObject({
      loras: [{ name: 'my style.safetensors', size: good.length }],
      usedBytes: good.length,
      quotaBytes: 9 * 1024,
      maxFileBytes: 5 * 1024,
    });
    expect(await choices('user001', 'LoraLoader')).toContain('my style.safetensors');
    expect(await choices('user001', 'LoraLoaderModelOnly')).toContain('my style.safetensors');
    expect(await json('api/models/loras', 'user001')).toEqual([
      'my style.safetensors',
      'shared-style.safetensors',
    ]);
    expect(await json('api/experiment/models/loras', 'user001')).toEqual([
      { name: 'my style.safetensors', pathIndex: 0 },
      { name: 'shared-style.safetensors', pathIndex: 0 },
    ]);
    const single = (await json('api/object_info/LoraLoader', 'user001')) as Record<string, unknown>;
    expect(JSON.stringify(single)).toContain('my style.safetensors');

    // Another participant sees none of it.
    expect(await choices('user002', 'LoraLoader')).not.toContain('my style.safetensors');
    expect(await choices('user002', 'LoraLoaderModelOnly')).not.toContain('my style.safetensors');
    expect(await json('api/models/loras', 'user002')).toEqual(['shared-style.safetensors']);
    expect(await choices('user002', 'LoraLoader')).toEqual(['shared-style.safetensors']);
    // No worker's private folder is ever listed.
    for (const user of ['user001', 'user002'])
      expect(JSON.stringify(await json('api/object_info', user))).not.toContain('_users/');
    expect(await json('api/loras', 'user002')).toMatchObject({ loras: [], usedBytes: 0 });
    expect(JSON.stringify(await json('api/object_info/LoraLoader', 'user002'))).not.toContain('my style');
  });

  it('accepts the owner’s LoRA in a prompt and refuses it for everyone else, in ComfyUI’s words', async () => {
    const mine = await submit('user001', loraPrompt('my style.safetensors'));
    expect(mine.status).toBe(200);
    expect((await submit('user002', loraPrompt('shared-style.safetensors'))).status).toBe(200);
    const theirs = await submit('user002', loraPrompt('my style.safetensors'));
    expect(theirs.status).toBe(400);
    const body = (await theirs.json()) as {
      node_errors: Record<string, { errors: { type: string; details: string }[] }>;
    };
    expect(body.node_errors['2']!.errors[0]!.type).toBe('value_not_in_list');
    expect(body.node_errors['2']!.errors[0]!.details).toContain("lora_name: 'my style.safetensors' not in");
    expect(JSON.stringify(body)).not.toContain('user001');
    expect(JSON.stringify(body)).not.toContain('_users/');
    // A worker's private copies are nobody's to name, not even their owner's.
    for (const user of ['user001', 'user002']) {
      const r = await submit(user, loraPrompt('_users/0123456789abcdef/leak.safetensors'));
      expect(r.status).toBe(400);
      expect(JSON.stringify(await r.json())).toContain('value_not_in_list');
    }
  });

  it('refuses files that are not safetensors and keeps nothing of them', async () => {
    const before = await loraKeys();
    const lenPrefixed = (n: bigint, rest: Buffer) => {
      const b = Buffer.alloc(8);
      b.writeBigUInt64LE(n);
      return Buffer.concat([b, rest]);
    };
    const cases: [string, Buffer, RegExp][] = [
      ['random.safetensors', Buffer.from('this is plainly not a tensor file at all, just text'), /header/],
      // A pickle (protocol 4) and a torch.save zip, under a .safetensors name.
      [
        'pickle.safetensors',
        Buffer.concat([Buffer.from([0x80, 0x04, 0x95]), Buffer.alloc(64, 1)]),
        /pickle/i,
      ],
      [
        'zip.safetensors',
        Buffer.concat([Buffer.from('PK\x03\x04'), Buffer.alloc(64, 0)]),
        /PyTorch checkpoint/,
      ],
      // Pickle formats refused by name, whatever they hold.
      ['style.ckpt', good, /pickle/i],
      ['style.pt', good, /pickle/i],
      ['style.bin', good, /pickle/i],
      ['style.txt', good, /\.safetensors/],
      // Header length far beyond the limit, and beyond the file.
      ['huge.safetensors', lenPrefixed(2n ** 40n, Buffer.from('{}')), /header length/],
      ['invalid.safetensors', lenPrefixed(11n, Buffer.from('{"a": [1, 2')), /not valid JSON/],
      ['array.safetensors', lenPrefixed(6n, Buffer.from('[1, 2]')), /not a JSON object/],
      // Offsets past the end: a good file cut short.
      ['short.safetensors', good.subarray(0, good.length - 10), /past the end/],
      // Trailing bytes after the last tensor.
      ['long.safetensors', Buffer.concat([good, Buffer.alloc(16)]), /after the last tensor/],
    ];
    for (const [name, body, why] of cases) {
      const r = await upload('user001', name, body);
      const answer = (await r.json()) as { error: { code: string; message: string } };
      expect({ name, status: r.status, code: answer.error.code }).toEqual({
        name,
        status: 400,
        code: 'LORA_INVALID',
      });
      expect(answer.error.message).toMatch(why);
    }
    // A header claiming a tensor beyond the data.
    const header = Buffer.from(
      JSON.stringify({ t: { dtype: 'F32', shape: [1000], data_offsets: [0, 4000] } }),
    );
    const lying = lenPrefixed(BigInt(header.length), Buffer.concat([header, Buffer.alloc(16)]));
    const r = await upload('user001', 'lying.safetensors', lying);
    expect(r.status).toBe(400);
    expect(((await r.json()) as { error: { message: string } }).error.message).toMatch(/past the end/);
    expect(await loraKeys()).toEqual(before);
    expect(await json('api/models/loras', 'user001')).toEqual([
      'my style.safetensors',
      'shared-style.safetensors',
    ]);
  });

  it('refuses a file over LORA_UPLOAD_LIMIT with the limit in the message', async () => {
    const big = makeSafetensors({ tensors: 2, n: 700 }); // 5.6 kB > 5 kB
    const r = await upload('user002', 'big.safetensors', big);
    expect(r.status).toBe(413);
    const body = (await r.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe('PAYLOAD_TOO_LARGE');
    expect(body.error.message).toContain('5 KB');
    expect(await json('api/loras', 'user002')).toMatchObject({ loras: [] });
  });

  it('keeps each participant within LORA_QUOTA; replacing or deleting makes room', async () => {
    const four = (seed: number) => makeSafetensors({ tensors: 1, n: 1000, seed }); // ~4 kB each
    expect((await upload('user002', 'a.safetensors', four(1))).status).toBe(201);
    expect((await upload('user002', 'b.safetensors', four(2))).status).toBe(201);
    const over = await upload('user002', 'c.safetensors', four(3));
    expect(over.status).toBe(413);
    const body = (await over.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe('LORA_QUOTA_EXCEEDED');
    expect(body.error.message).toMatch(/of 9 KB/);
    // Replacing a LoRA of the same name does not count the old one.
    expect((await upload('user002', 'b.safetensors', four(4))).status).toBe(201);
    const del = await fetch(`${base}/user002/api/loras/a.safetensors`, {
      method: 'DELETE',
      headers: { authorization: auth.user002! },
    });
    expect(del.status).toBe(204);
    expect((await upload('user002', 'c.safetensors', four(3))).status).toBe(201);
    expect(await json('api/models/loras', 'user002')).toEqual([
      'b.safetensors',
      'c.safetensors',
      'shared-style.safetensors',
    ]);
    // Quota is per participant: user001's space is untouched.
    expect(await json('api/models/loras', 'user001')).toEqual([
      'my style.safetensors',
      'shared-style.safetensors',
    ]);
    const gone = await fetch(`${base}/user002/api/loras/a.safetensors`, {
      method: 'DELETE',
      headers: { authorization: auth.user002! },
    });
    expect(gone.status).toBe(404);
  });

  it('lets no participant touch another’s LoRAs', async () => {
    const r = await upload('user002', 'x.safetensors', good).catch(() => null);
    expect(r?.status).toBe(413); // (quota is full; this only checks the route is user002's own)
    const foreign = await fetch(`${base}/user001/api/loras`, { headers: { authorization: auth.user002! } });
    expect(foreign.status).toBe(403);
    const del = await fetch(`${base}/user001/api/loras/my%20style.safetensors`, {
      method: 'DELETE',
      headers: { authorization: auth.user002! },
    });
    expect(del.status).toBe(403);
    expect(await json('api/models/loras', 'user001')).toEqual([
      'my style.safetensors',
      'shared-style.safetensors',
    ]);
  });
});

describe('the instructor dashboard', () => {
  it('shows each participant’s LoRA use against the quota', async () => {
    const state = await h.app.inject({
      url: '/admin/api/state',
      headers: { authorization: `Bearer ${API_TOKEN}` },
    });
    expect(state.statusCode).toBe(200);
    const rows = (state.json() as { sections: { participants: { user: string; loras: unknown }[] } }).sections
      .participants;
    const one = await json('api/loras', 'user001');
    expect(rows.find((p) => p.user === 'user001')?.loras).toEqual({
      count: 1,
      bytes: (one as { usedBytes: number }).usedBytes,
      quotaBytes: 9 * 1024,
    });
    expect(rows.find((p) => p.user === 'user002')?.loras).toMatchObject({ count: 2, quotaBytes: 9 * 1024 });
  });
});

describe('a form cut short', () => {
  it('is the client’s error and leaves nothing behind', async () => {
    const good = makeSafetensors({ tensors: 2, n: 64 });
    const boundary = 'cutshortboundary';
    const head = Buffer.from(
      `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="cut.safetensors"\r\n` +
        'Content-Type: application/octet-stream\r\n\r\n',
    );
    // The file part never ends: no closing boundary.
    const r = await h.app.inject({
      method: 'POST',
      url: '/user001/api/loras',
      headers: { authorization: auth.user001!, 'content-type': `multipart/form-data; boundary=${boundary}` },
      payload: Buffer.concat([head, good.subarray(0, 100)]),
    });
    expect(r.statusCode).toBe(400);
    expect(await loraKeys()).not.toContainEqual(expect.stringContaining('cut.safetensors'));
    expect((await loraKeys()).filter((k) => k.includes('.uploads'))).toEqual([]);
  });
});
