/**
 * Model warm-up: the agent reads the waiting jobs' model files ahead into the page cache, found
 * where ComfyUI says its model folders are (`/internal/folder_paths`, the stand-in answers as a
 * real ComfyUI does), never outside them, within a memory budget; and a fresh worker is told by
 * the control plane which files the jobs at the head of the queue load.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { startTestAgent } from '../../../test/support/agent.js';
import { startHarness } from '../../../test/support/app-harness.js';
import { startStandin, type Standin } from '../../../test/support/comfyui-standin/server.js';
import { waitFor } from '../../../test/support/processes.js';
import { listen } from '../../../test/support/gateway-kit.js';
import type { AgentHandle } from './index.js';
import { ModelReadAhead } from './model-read-ahead.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function standinWithModels(
  files: Record<string, number>,
): Promise<{ standin: Standin; modelsDir: string }> {
  const modelsDir = mkdtempSync(join(tmpdir(), 'cm-models-'));
  cleanups.push(() => rmSync(modelsDir, { recursive: true, force: true }));
  for (const [path, size] of Object.entries(files)) {
    mkdirSync(join(modelsDir, path, '..'), { recursive: true });
    writeFileSync(join(modelsDir, path), Buffer.alloc(size, 7));
  }
  const standin = await startStandin({ modelsDir, delayMs: 20 });
  cleanups.push(() => standin.close());
  return { standin, modelsDir };
}

describe('ModelReadAhead', () => {
  it("reads the files ComfyUI would load, skips missing ones and paths outside ComfyUI's folders", async () => {
    const { standin } = await standinWithModels({
      'checkpoints/flux.safetensors': 3 << 20,
      'vae/ae.safetensors': 1 << 20,
      'secret.txt': 10,
    });
    const r = new ModelReadAhead({ comfyuiUrl: standin.url, logger: pino({ level: 'silent' }) });
    r.want([
      'checkpoints/flux.safetensors',
      'vae/ae.safetensors',
      'checkpoints/none.safetensors',
      'checkpoints/../secret.txt',
      'nofolder',
    ]);
    // Asked twice: read once.
    r.want(['checkpoints/flux.safetensors']);
    await r.idle();
    expect(r.status()).toEqual({
      files: 2,
      bytes: (3 << 20) + (1 << 20),
      queued: 0,
      reading: null,
      missing: 3,
    });
    r.want(['checkpoints/flux.safetensors']);
    await r.idle();
    expect(r.status().files).toBe(2);
    await r.stop();
  });

  it('stays within its share of memory', async () => {
    const { standin } = await standinWithModels({
      'checkpoints/big.safetensors': 6 << 20,
      'loras/small.safetensors': 1 << 20,
    });
    const r = new ModelReadAhead({
      comfyuiUrl: standin.url,
      logger: pino({ level: 'silent' }),
      memoryBytes: 8 << 20,
      budgetFraction: 0.5,
    });
    r.want(['checkpoints/big.safetensors', 'loras/small.safetensors']);
    await r.idle();
    expect(r.status()).toMatchObject({ files: 1, bytes: 1 << 20 });
  });

  it('without ComfyUI beside it (no folder paths) it reads nothing and never throws', async () => {
    const r = new ModelReadAhead({ comfyuiUrl: 'http://127.0.0.1:9', logger: pino({ level: 'silent' }) });
    r.want(['checkpoints/a.safetensors']);
    await r.idle();
    expect(r.status()).toMatchObject({ files: 0, bytes: 0 });
  });
});

describe('warm-up of a fresh worker', () => {
  it("the control plane names the waiting jobs' models at welcome and the agent reads them ahead", async () => {
    const TOKEN = 'warmup-test-worker-token-0123456789';
    const h = await startHarness({ WORKER_TOKENS: `gpu:${TOKEN}` });
    cleanups.push(() => h.close());
    const { standin } = await standinWithModels({ 'checkpoints/warm.safetensors': 2 << 20 });
    // Paused, so the job stays at the head of the queue while the worker registers.
    await h.services.queue.updateSettings({ paused: true });
    const job = await h.services.queue.enqueue({
      user: 'alice',
      prompt: {
        '1': { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: 'warm.safetensors' } },
        '2': { class_type: 'PreviewAny', inputs: { source: ['1', 0] } },
      },
    });
    expect(job.models).toEqual(['checkpoints/warm.safetensors']);
    const base = await listen(h);
    const agent: AgentHandle = startTestAgent({
      serverUrl: base,
      token: TOKEN,
      comfyuiUrl: standin.url,
      name: 'fresh-gpu',
      mirrorFrontend: false,
    });
    cleanups.push(() => agent.stop());
    await waitFor(() => agent.status().readAhead.files === 1, 30_000, 'the model to be read ahead');
    expect(agent.status().readAhead).toMatchObject({ bytes: 2 << 20, missing: 0 });
  });
});
