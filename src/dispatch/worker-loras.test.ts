/**
 * The worker side of participants' own LoRAs: `GET /worker/v1/jobs/:id/loras[/<name>]` answers the
 * job owner's LoRAs (with sha256) to the worker holding that job only, never another user's.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { LoraLibrary } from '../loras/lora-library.js';
import { makeSafetensors } from '../../test/support/loras.js';
import {
  PROMPT,
  rawRequest,
  startControlPlane,
  TestAgent,
  type ControlPlane,
} from '../../test/support/worker-hub-kit.js';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';

let cp: ControlPlane | undefined;
const agents: TestAgent[] = [];

afterEach(async () => {
  for (const a of agents.splice(0)) await a.close();
  await cp?.close();
  cp = undefined;
});

describe('worker LoRA endpoints', () => {
  it('serve the holding worker the job owner’s LoRAs, and nothing else to anyone', async () => {
    cp = await startControlPlane();
    const lib = new LoraLibrary(cp.services.files, cp.services.store, { maxFileBytes: 1e6, quotaBytes: 1e6 });
    const mine = makeSafetensors({ tensors: 2, n: 8, seed: 1 });
    const theirs = makeSafetensors({ tensors: 2, n: 8, seed: 2 });
    await lib.upload('alice', 'mine.safetensors', Readable.from([mine]));
    await lib.upload('bob', 'theirs.safetensors', Readable.from([theirs]));

    const token = await cp.token('gpu');
    const { agent } = await TestAgent.register(cp.wsUrl, token, { prefetch: 0 });
    agents.push(agent);
    const job = await cp.services.queue.enqueue({ user: 'alice', prompt: PROMPT });
    await agent.next('assign');
    const get = (path: string, t = token) =>
      rawRequest(cp!.url, 'GET', `/worker/v1/jobs/${job.id}/${path}`, {
        headers: { authorization: `Bearer ${t}` },
      });

    const list = await get('loras');
    expect(list.status).toBe(200);
    const sha = createHash('sha256').update(mine).digest('hex');
    expect(list.json()).toEqual({ loras: [{ name: 'mine.safetensors', size: mine.length, sha256: sha }] });
    const file = await fetch(`${cp.url}/worker/v1/jobs/${job.id}/loras/mine.safetensors`, {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(file.status).toBe(200);
    expect(file.headers.get('x-content-sha256')).toBe(sha);
    expect(Buffer.from(await file.arrayBuffer()).equals(mine)).toBe(true);

    // Bob's LoRA is not this job's owner's: it does not exist here.
    expect((await get('loras/theirs.safetensors')).status).toBe(404);
    expect((await get('loras/..%2F..%2Fbob%2Floras%2Ftheirs.safetensors')).status).toBe(404);
    // Another worker, or none, gets nothing.
    const other = await cp.token('other');
    expect((await get('loras', other)).status).toBe(403);
    expect((await get('loras/mine.safetensors', other)).status).toBe(403);
    expect((await get('loras', 'wrong-token-0000000000')).status).toBe(401);
    // Once the job is over, neither.
    await cp.services.queue.cancel(job.id);
    expect((await get('loras/mine.safetensors')).status).toBe(409);
  });
});
