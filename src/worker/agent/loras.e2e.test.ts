/**
 * A participant's own LoRA through the whole system: uploaded to the control plane (real SQLite
 * store), fetched on demand by a real worker agent into ComfyUI's loras folder (`_users/<hash>/`)
 * and loaded by the ComfyUI stand-in, whose LoRA loader reads the file and reports its sha256.
 * The second job uses the agent's cache; a replaced LoRA is fetched again; the private path never
 * reaches the participant; another participant can name neither the LoRA nor its private path,
 * not even with a job that skipped the submit check.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentReady, testAgentOptions } from '../../../test/support/agent.js';
import { startStandin, type Standin } from '../../../test/support/comfyui-standin/server.js';
import { makeSafetensors } from '../../../test/support/loras.js';
import { listen, startHarness, type Harness } from '../../../test/support/gateway-kit.js';
import { createAgent, type WorkerAgent } from './index.js';
import { userLoraFolder } from './lora-cache.js';
import { waitFor } from '../../../test/support/processes.js';

const TOKEN = 'loras-test-worker-token-0123456789';
type Prompt = Record<string, { class_type: string; inputs: Record<string, unknown> }>;

let h: Harness;
let base: string;
let standin: Standin;
let agent: WorkerAgent;
const auth: Record<string, string> = {};

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

function loraPrompt(lora: string): Prompt {
  return {
    '1': { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: 'sd15.safetensors' } },
    '2': {
      class_type: 'LoraLoaderModelOnly',
      inputs: { model: ['1', 0], lora_name: lora, strength_model: 0.75 },
    },
    '3': { class_type: 'PreviewAny', inputs: { source: ['2', 0] } },
  };
}

async function upload(user: string, name: string, body: Buffer): Promise<void> {
  const form = new FormData();
  form.append('file', new Blob([body]), name);
  const r = await fetch(`${base}/${user}/api/loras`, {
    method: 'POST',
    headers: { authorization: auth[user]! },
    body: form,
  });
  expect(r.status, await r.clone().text()).toBe(201);
}

async function submit(user: string, prompt: Prompt) {
  return h.app.inject({
    method: 'POST',
    url: `/${user}/api/prompt`,
    headers: { authorization: auth[user]!, 'content-type': 'application/json' },
    payload: { prompt, client_id: 'loras-e2e' },
  });
}

interface Entry {
  outputs: Record<string, { text?: string[] }>;
  status: { status_str: string; messages: [string, Record<string, unknown>][] };
}

async function finished(user: string, id: string): Promise<Entry> {
  return waitFor(
    async () => {
      const r = await h.app.inject({
        method: 'GET',
        url: `/${user}/api/history/${id}`,
        headers: { authorization: auth[user]! },
      });
      const entry = (r.json() as Record<string, Entry>)[id];
      return entry?.status?.status_str ? entry : null;
    },
    60_000,
    `job ${id} to finish`,
  );
}

/** What the stand-in's LoRA loader read, as PreviewAny showed it. */
function loaded(entry: Entry): { sha256: string; size: number; strength: number }[] {
  expect(entry.status.status_str).toBe('success');
  return (
    JSON.parse(entry.outputs['3']!.text![0]!) as {
      loras: { sha256: string; size: number; strength: number }[];
    }
  ).loras;
}

beforeAll(async () => {
  h = await startHarness({ WORKER_TOKENS: `gpu:${TOKEN}` });
  auth.user001 = await h.addUser('user001');
  auth.user002 = await h.addUser('user002');
  base = await listen(h);
  standin = await startStandin({ delayMs: 10, models: { checkpoints: ['sd15.safetensors'] } });
  // Not startTestAgent's handle: the tests read the agent's LoRA cache counters.
  agent = createAgent(
    testAgentOptions({
      serverUrl: base,
      token: TOKEN,
      comfyuiUrl: standin.url,
      name: 'gpu-loras',
      lorasDir: join(standin.dirs.models, 'loras'),
    }),
  );
  agent.start();
  await agentReady(h);
}, 60_000);

afterAll(async () => {
  await agent?.stop();
  await standin?.close();
  await h?.close();
});

describe('participant LoRAs on a worker', () => {
  const first = makeSafetensors({ tensors: 3, n: 64, seed: 1 });
  const second = makeSafetensors({ tensors: 3, n: 64, seed: 2 });
  const privatePath = (b = first) =>
    `_users/${userLoraFolder('user001')}/${sha(b).slice(0, 16)}/style.safetensors`;

  it('runs a job with the participant’s LoRA: fetched once, loaded by ComfyUI, cached for the next job', async () => {
    await upload('user001', 'style.safetensors', first);
    const r = await submit('user001', loraPrompt('style.safetensors'));
    expect(r.statusCode, r.body).toBe(200);
    const id = (r.json() as { prompt_id: string }).prompt_id;
    const entry = await finished('user001', id);
    expect(loaded(entry)).toEqual([{ sha256: sha(first), size: first.length, strength: 0.75 }]);
    // The stand-in's loras folder holds exactly the uploaded bytes, in the user's private folder.
    const onWorker = readFileSync(join(standin.dirs.models, 'loras', privatePath()));
    expect(sha(onWorker)).toBe(sha(first));
    expect(agent.loras.downloads).toBe(1);

    // The participant never sees where the worker put it: their history shows their own name.
    const history = await h.app.inject({
      method: 'GET',
      url: `/user001/api/history/${id}`,
      headers: { authorization: auth.user001! },
    });
    expect(history.body).toContain('"lora_name":"style.safetensors"');
    expect(history.body).not.toContain('_users');

    // A second job takes the cached file.
    const again = await submit('user001', loraPrompt('style.safetensors'));
    const entry2 = await finished('user001', (again.json() as { prompt_id: string }).prompt_id);
    expect(loaded(entry2).map((l) => l.sha256)).toEqual([sha(first)]);
    expect(agent.loras.downloads).toBe(1);
  }, 90_000);

  it('fetches a replaced LoRA afresh (same name, new bytes)', async () => {
    await upload('user001', 'style.safetensors', second);
    const r = await submit('user001', loraPrompt('style.safetensors'));
    const entry = await finished('user001', (r.json() as { prompt_id: string }).prompt_id);
    expect(loaded(entry).map((l) => l.sha256)).toEqual([sha(second)]);
    expect(agent.loras.downloads).toBe(2);
  }, 90_000);

  it('lets no other participant name it: refused at submit, and by the agent if it got that far', async () => {
    // At submit: neither the name nor the worker's private path.
    for (const name of ['style.safetensors', privatePath()]) {
      const r = await submit('user002', loraPrompt(name));
      expect(r.statusCode, name).toBe(400);
      expect(r.body).toContain('value_not_in_list');
      // The list the error offers holds none of user001's LoRAs.
      expect(r.body).toContain('not in []');
    }
    // A job that skipped the submit check (enqueued directly) still cannot reach user001's file.
    const ranBefore = standin.state.executions.length;
    for (const name of ['style.safetensors', privatePath(second)]) {
      const job = await h.services.queue.enqueue({ user: 'user002', prompt: loraPrompt(name) });
      const entry = await finished('user002', job.id);
      expect(entry.status.status_str, name).toBe('error');
      expect(JSON.stringify(entry.status.messages)).not.toContain(sha(second));
      // The name is not user002's LoRA: ComfyUI refuses it; the private path: the agent does.
      expect(JSON.stringify(entry.status.messages)).toMatch(
        name === 'style.safetensors' ? /ComfyUI rejected the prompt/ : /reserved for participants/,
      );
    }
    // Neither reached ComfyUI's executor with user001's LoRA loaded.
    const ran = standin.state.executions.slice(ranBefore);
    for (const e of ran) expect(JSON.stringify(e)).not.toContain(sha(second));
    expect(agent.loras.downloads).toBe(2);
  }, 90_000);
});
