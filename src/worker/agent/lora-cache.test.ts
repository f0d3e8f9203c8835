/**
 * The agent's LoRA cache against a small control plane stand-in: prompts without LoRAs cost no
 * request; private paths are refused before any; a download whose sha256 differs from the one the
 * control plane stated is never named in ComfyUI's folder; `--loras-dir` must be a folder.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { resolveWorkerArgs } from '../../cli/commands/worker.js';
import type { ComfyPrompt } from '../../store/types.js';
import { makeSafetensors } from '../../../test/support/loras.js';
import { LoraCache, LoraRefused, userLoraFolder } from './lora-cache.js';

const lora = makeSafetensors({ tensors: 2, n: 8 });
const sha = createHash('sha256').update(lora).digest('hex');
let server: Server;
let url: string;
let dir: string;
let requests: string[];
/** What the file endpoint sends (a corrupted copy in one test). */
let served: Buffer;

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cm-loras-'));
  requests = [];
  served = lora;
  server = createServer((req, res) => {
    requests.push(req.url ?? '');
    if (req.url === '/worker/v1/jobs/j1/loras') {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ loras: [{ name: 'mine.safetensors', size: lora.length, sha256: sha }] }));
    } else if (req.url === '/worker/v1/jobs/j1/loras/mine.safetensors') {
      res.end(served);
    } else {
      res.statusCode = 404;
      res.end();
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterEach(async () => {
  await new Promise((r) => server.close(r));
  rmSync(dir, { recursive: true, force: true });
});

const prompt = (name: string): ComfyPrompt => ({
  '1': { class_type: 'LoraLoaderModelOnly', inputs: { model: ['2', 0], lora_name: name, strength_model: 1 } },
});
const cache = (d: string | null = dir) =>
  new LoraCache(d ?? undefined, { serverUrl: url, token: 't' }, pino({ level: 'silent' }));
const job = { jobId: 'j1', user: 'alice' };

describe('LoraCache', () => {
  it('leaves prompts without LoRAs alone, asking nothing', async () => {
    const p: ComfyPrompt = { '1': { class_type: 'EmptyImage', inputs: { width: 8, height: 8 } } };
    expect(await cache().prepare(job, p, undefined)).toBe(p);
    expect(requests).toEqual([]);
  });

  it('refuses a private path before asking anything', async () => {
    await expect(cache().prepare(job, prompt('_users/abc/x.safetensors'), undefined)).rejects.toThrow(
      LoraRefused,
    );
    expect(requests).toEqual([]);
  });

  it('rewrites the owner’s LoRA to its private path, and leaves shared ones as they are', async () => {
    const c = cache();
    const out = await c.prepare(job, prompt('mine.safetensors'), undefined);
    const path = `_users/${userLoraFolder('alice')}/${sha.slice(0, 16)}/mine.safetensors`;
    expect(out['1']!.inputs.lora_name).toBe(path);
    expect(existsSync(join(dir, path))).toBe(true);
    const shared = prompt('shared.safetensors');
    expect((await c.prepare(job, shared, undefined))['1']!.inputs.lora_name).toBe('shared.safetensors');
    expect(c.downloads).toBe(1);
    // A user's folder does not give the user name away.
    expect(userLoraFolder('alice')).not.toContain('alice');
    expect(userLoraFolder('alice')).not.toBe(userLoraFolder('bob'));
  });

  it('never names a download whose sha256 is not the one stated', async () => {
    served = Buffer.concat([lora.subarray(0, lora.length - 1), Buffer.from([1])]);
    await expect(cache().prepare(job, prompt('mine.safetensors'), undefined)).rejects.toThrow(/sha256/);
    const walk = (d: string): string[] =>
      readdirSync(d, { withFileTypes: true }).flatMap((e) =>
        e.isDirectory() ? walk(join(d, e.name)) : [e.name],
      );
    expect(walk(dir)).toEqual([]);
  });

  it('says so when the agent has no loras folder', async () => {
    await expect(cache(null).prepare(job, prompt('mine.safetensors'), undefined)).rejects.toThrow(
      /--loras-dir/,
    );
  });
});

describe('--loras-dir', () => {
  const env = { COMFY_MULTI_SERVER: 'http://cp', COMFY_MULTI_TOKEN: 't' };
  it('takes an existing folder from the flag or COMFYUI_LORAS_DIR, and refuses anything else', () => {
    const r = resolveWorkerArgs({}, { ...env, COMFYUI_LORAS_DIR: dir });
    expect(r.ok && r.args.lorasDir).toBe(dir);
    const bad = resolveWorkerArgs({ lorasDir: join(dir, 'missing') }, env);
    expect(!bad.ok && bad.errors[0]).toMatch(/--loras-dir \(COMFYUI_LORAS_DIR\) must be an existing folder/);
  });
});
