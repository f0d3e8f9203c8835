/**
 * The compatibility judge: an unmodified third-party ComfyUI client library from npm
 * (@saintno/comfyui-sdk) drives `/user001/` with HTTP Basic auth, against the whole system: the
 * control plane (real SQLite store), a real worker agent, and the ComfyUI stand-in as its GPU.
 *
 * With `COMFYUI_URL` set, the worker uses that real ComfyUI instead and the same checks run,
 * except the ones only the stand-in's slow node can give (progress steps and previews: the
 * model-free prompt has no sampler to report them).
 */
import { ComfyApi, CallWrapper, PromptBuilder } from '@saintno/comfyui-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGpu, type TestGpu } from '../../test/support/agent.js';
import { modelFreePrompt } from '../../test/support/prompts.js';
import { listen, startHarness, type Harness } from '../../test/support/gateway-kit.js';

const REAL_COMFYUI = process.env.COMFYUI_URL?.replace(/\/+$/, '') || null;
const TOKEN = 'sdk-test-worker-token-0123456789';
const PASSWORD = 'pw-user001-0123456789';

let h: Harness;
let base: string;
let gpu: TestGpu | undefined;

beforeAll(async () => {
  h = await startHarness({ WORKER_TOKENS: `gpu:${TOKEN}` });
  await h.services.accounts.create('user001', 'participant', PASSWORD);
  base = await listen(h);
  gpu = await startTestGpu(h, {
    serverUrl: base,
    token: TOKEN,
    name: 'gpu-sdk',
    realComfyui: REAL_COMFYUI,
    standin: { delayMs: 400 },
  });
}, 60_000);

afterAll(async () => {
  await gpu?.stop();
  await h?.close();
});

describe('an unmodified ComfyUI client library (@saintno/comfyui-sdk)', () => {
  it('queues the model-free prompt, receives progress and downloads the output', async () => {
    const api = new ComfyApi(`${base}/user001`, 'sdk-client-1', {
      credentials: { type: 'basic', username: 'user001', password: PASSWORD },
    });
    api.init(20, 100);
    await api.waitForReady();
    try {
      const stats = await api.getSystemStats();
      expect((stats.system as unknown as Record<string, unknown>).comfyui_version).toBe('0.3.64');

      // The frontend's API format carries `_meta.title`; the SDK's types insist on it.
      const prompt = Object.fromEntries(
        Object.entries(
          modelFreePrompt({
            ...(REAL_COMFYUI ? {} : { sleep: { seconds: 0.6, steps: 3 } }),
            filenamePrefix: 'sdk',
          }),
        ).map(([id, n]) => [id, { ...n, _meta: { title: n.class_type } }]),
      );
      const workflow = new PromptBuilder(prompt, ['color'], ['images'])
        .setInputNode('color', '1.inputs.color')
        .setOutputNode('images', '3')
        // A real ComfyUI keeps results between runs: a colour of its own makes this one run.
        .input('color', REAL_COMFYUI ? Math.floor(Math.random() * 0xffffff) : 0x112233);

      const progress: { value: number; max: number }[] = [];
      const previews: Blob[] = [];
      let started = false;
      const result = await new Promise<Record<string, unknown> | false>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('the job did not finish in time')), 30_000);
        new CallWrapper(api, workflow)
          .onStart(() => (started = true))
          .onProgress((p) => progress.push({ value: p.value, max: p.max }))
          .onPreview((blob) => previews.push(blob))
          .onFinished((out) => {
            clearTimeout(timer);
            resolve(out as Record<string, unknown>);
          })
          .onFailed((err) => {
            clearTimeout(timer);
            reject(err);
          })
          .run()
          .catch(reject);
      });
      expect(result).not.toBe(false);
      if (!REAL_COMFYUI) {
        // A real ComfyUI runs this prompt in milliseconds: the SDK then finds it finished in the
        // history right after queueing it and reports no start.
        expect(started).toBe(true);
        expect(progress.length).toBeGreaterThan(0);
        expect(progress.at(-1)).toEqual({ value: 3, max: 3 });
        // Latent previews relayed from the worker arrive as ComfyUI binary frames.
        expect(previews.length).toBeGreaterThan(0);
      }

      const images = (
        result as { images: { images: { filename: string; subfolder: string; type: string }[] } }
      ).images.images;
      expect(images).toHaveLength(1);
      expect(images[0]!.filename).toMatch(/^sdk_\d+_\.png$/);
      const blob = await api.getImage(images[0]!);
      const bytes = Buffer.from(await blob.arrayBuffer());
      expect(bytes.subarray(0, 8).toString('hex')).toBe('89504e470d0a1a0a');

      const history = await api.getHistories(10);
      const entry = Object.values(history)[0] as { status: { status_str: string } };
      expect(entry.status.status_str).toBe('success');
      const queue = await api.getQueue();
      expect(queue.queue_running).toEqual([]);
      expect(queue.queue_pending).toEqual([]);
    } finally {
      api.destroy();
    }
  }, 60_000);
});
