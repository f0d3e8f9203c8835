/**
 * ComfyClient and ComfySocket end to end against the ComfyUI v0.3.64 stand-in
 * (`test/support/comfyui-standin`): real runs, files, interrupts, outages and reconnection.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startStandin, type Standin } from '../../test/support/comfyui-standin/server.js';
import { modelFreePrompt } from '../../test/support/prompts.js';
import { ComfyPromptError } from './client-errors.js';
import { ComfyClient } from './comfy-client.js';
import type { ComfySocket } from './comfy-socket.js';
import { jobErrorFromOutcome } from './prompt-outcome.js';
import { rewriteOutputPrefixes, stripOutputNamespace } from './prompt-tools.js';
import type { BinaryFrame, ObjectInfo, PromptInput } from './protocol.js';
import { validatePrompt } from './validate-prompt.js';

let standin: Standin;
let client: ComfyClient;
let socket: ComfySocket;
let objectInfo: ObjectInfo;

beforeAll(async () => {
  standin = await startStandin({ delayMs: 300 });
  client = new ComfyClient({ baseUrl: standin.url, clientId: `worker-${randomUUID()}`, timeoutMs: 5000 });
  socket = client.openSocket({ reconnect: { initialDelayMs: 50, maxDelayMs: 200 } });
  await socket.opened();
  objectInfo = await client.objectInfo();
});

afterEach(async () => {
  await standin.faults.reset();
  await standin.waitForIdle();
});

afterAll(async () => {
  await socket?.close();
  await standin?.close();
});

describe('ComfyClient against the ComfyUI stand-in', () => {
  it('is healthy and ready, and the prompt we send validates locally too', async () => {
    expect(await client.health()).toBe(true);
    expect(await client.ready()).toMatchObject({ ready: true });
    expect((await client.systemStats()).system.comfyui_version).toBe('0.3.64');
    expect(validatePrompt(modelFreePrompt(), objectInfo)).toMatchObject({ ok: true, outputs: ['3'] });
  });

  it('runs a prompt under our id, namespaced, and downloads its output', async () => {
    const promptId = randomUUID();
    const { prompt } = rewriteOutputPrefixes(modelFreePrompt({ filenamePrefix: 'mine' }), {
      user: 'alice',
      jobId: promptId,
    });
    const frames: [string, string | null][] = [];
    const onBinary = (f: BinaryFrame, p: string | null) => frames.push([f.name, p]);
    socket.on('binary', onBinary);
    const queued = await client.queuePrompt(prompt, {
      promptId,
      extraData: { extra_pnginfo: { workflow: {} } },
    });
    expect(queued).toMatchObject({ prompt_id: promptId, node_errors: {} });
    const outcome = await client.waitForCompletion(promptId, { socket });
    socket.off('binary', onBinary);
    expect(outcome).toMatchObject({ status: 'success', source: 'socket' });
    if (outcome.status !== 'success') return;
    const [file] = outcome.outputs;
    expect(file).toMatchObject({
      nodeId: '3',
      type: 'output',
      kind: 'images',
      subfolder: `alice/${promptId}`,
    });
    expect(stripOutputNamespace(file?.subfolder ?? '', { user: 'alice', jobId: promptId })).toBe('');
    const stream = await client.view(file ?? { filename: '' });
    const chunks: Buffer[] = [];
    for await (const c of stream) chunks.push(c as Buffer);
    const png = Buffer.concat(chunks);
    expect(png.subarray(0, 8).toString('hex')).toBe('89504e470d0a1a0a');
    if (stream.contentLength !== null) expect(png.length).toBe(stream.contentLength);
    const history = await client.history(promptId);
    expect(history[promptId]?.status?.status_str).toBe('success');
    expect(frames.every(([, p]) => p === promptId)).toBe(true);
  });

  it('uploads an input and runs LoadImage on it', async () => {
    const source = await client.view({ filename: 'example.png', type: 'input' });
    const uploaded = await client.uploadImage(source, {
      filename: 'copy.png',
      subfolder: 'alice',
      contentType: 'image/png',
    });
    expect(uploaded).toEqual({ name: 'copy.png', subfolder: 'alice', type: 'input' });
    const promptId = randomUUID();
    await client.queuePrompt(modelFreePrompt({ loadImage: 'alice/copy.png' }), { promptId });
    expect(await client.waitForCompletion(promptId, { socket })).toMatchObject({ status: 'success' });
  });

  it("answers a bad prompt with ComfyUI's body, the same as our validator", async () => {
    const cases: PromptInput[] = [
      { ...modelFreePrompt(), '9': { class_type: 'NoSuchNode_Fixture', inputs: {} } },
      modelFreePrompt({ width: 0 }),
      { ...modelFreePrompt(), '3': { class_type: 'SaveImage', inputs: { images: ['2', 0] } } },
      { '1': { class_type: 'EmptyImage', inputs: { width: 8, height: 8, batch_size: 1, color: 0 } } },
    ];
    for (const prompt of cases) {
      const err = await client.queuePrompt(prompt).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ComfyPromptError);
      const local = validatePrompt(prompt, objectInfo);
      expect(local.ok).toBe(false);
      if (!local.ok) expect((err as ComfyPromptError).body).toEqual(local.body);
    }
  });

  it('interrupts the running prompt by id', async () => {
    const promptId = randomUUID();
    await client.queuePrompt(modelFreePrompt({ sleep: { seconds: 2, steps: 20, seed: 1 } }), { promptId });
    const started = new Promise<void>((resolve) => {
      const off = socket.onPrompt(promptId, (ev) => {
        if (ev.kind === 'message' && ev.message.type === 'progress') {
          off();
          resolve();
        }
      });
    });
    await started;
    await client.interrupt('someone-else');
    await client.interrupt(promptId);
    const outcome = await client.waitForCompletion(promptId, { socket });
    expect(outcome.status).toBe('interrupted');
    expect(jobErrorFromOutcome(outcome)).toMatchObject({ reason: 'interrupted' });
  });

  it('removes a pending prompt from the queue', async () => {
    const running = randomUUID();
    const pending = randomUUID();
    await client.queuePrompt(modelFreePrompt({ sleep: { seconds: 0.5, seed: 2 } }), { promptId: running });
    await client.queuePrompt(modelFreePrompt({ sleep: { seconds: 0.5, seed: 3 } }), { promptId: pending });
    const before = await client.getQueue();
    expect(before.queue_pending.map((q) => q[1])).toContain(pending);
    await client.deleteFromQueue([pending]);
    const after = await client.getQueue();
    expect(after.queue_pending.map((q) => q[1])).not.toContain(pending);
    await client.waitForCompletion(running, { socket });
    expect(await client.history(pending)).toEqual({});
  });

  it('recovers an outcome sent while the socket was down, from /history after reconnecting', async () => {
    const promptId = randomUUID();
    const reconnected = new Promise<void>((resolve) => {
      const onOpen = (i: { reconnected: boolean }) => {
        if (i.reconnected) {
          socket.off('open', onOpen);
          resolve();
        }
      };
      socket.on('open', onOpen);
    });
    await client.queuePrompt(modelFreePrompt({ sleep: { seconds: 0.2, seed: 4 } }), { promptId });
    await standin.faults.setUnreachable('refuse', { forMs: 900 });
    const outcome = await client.waitForCompletion(promptId, { socket, pollIntervalMs: 60_000 });
    await reconnected;
    expect(outcome).toMatchObject({ status: 'success', source: 'history' });
    expect(socket.connected).toBe(true);
  });
});
