/**
 * Behaviour beyond the recorded sessions: message routing per client, progress and preview
 * frames of the slow node, queue order with `front`, model nodes, fault injection (in-process
 * and over HTTP), restart, the CLI, and the shared `modelFreePrompt()` helper.
 */
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { MODEL_FREE_NODES, modelFreePrompt } from '../prompts.js';
import type { Standin } from './server.js';
import {
  RecordingClient,
  http,
  makePng,
  postJson,
  readPng,
  sleep,
  spawnStandinCli,
  types,
  uploadForm,
  withStandin,
  type Json,
} from './test-helpers.js';

async function submit(s: Standin, prompt: unknown, extra: Record<string, unknown> = {}): Promise<string> {
  const res = await postJson(`${s.url}/api/prompt`, { prompt, ...extra });
  expect(res.status, JSON.stringify(res.json)).toBe(200);
  return res.json.prompt_id;
}

async function history(s: Standin, promptId: string): Promise<Json> {
  return (await http(`${s.url}/api/history/${promptId}`)).json[promptId];
}

const refused = (url: string) =>
  fetch(url).then(
    () => 'answered',
    (err: Error & { cause?: { code?: string } }) => err.cause?.code ?? err.message,
  );

describe('comfyui stand-in: routing of WebSocket messages', () => {
  it("sends a prompt's events to its client only, and broadcasts status", () =>
    withStandin(async (s) => {
      const a = await RecordingClient.connect(s.wsUrl, 'client-a');
      const b = await RecordingClient.connect(s.wsUrl, 'client-b');
      const id = await submit(s, modelFreePrompt(), { client_id: 'client-a' });
      await a.waitForEnd(id);
      await s.waitForIdle();
      expect(types(a.messages)).toContain('execution_success');
      expect(new Set(types(b.messages))).toEqual(new Set(['status']));
      await Promise.all([a.close(), b.close()]);
    }));

  it('agrees to permessage-deflate with a client that offers it, as ComfyUI (aiohttp) does', () =>
    withStandin(async (s) => {
      const a = await RecordingClient.connect(s.wsUrl, 'client-a', undefined, { compress: true });
      expect(a.extensions).toContain('permessage-deflate');
      const id = await submit(s, modelFreePrompt(), { client_id: 'client-a' });
      await a.waitForEnd(id);
      expect(types(a.messages)).toContain('execution_success');
      const plain = await RecordingClient.connect(s.wsUrl, 'client-b');
      expect(plain.extensions).toBe('');
      await Promise.all([a.close(), plain.close()]);
    }));

  it('without client_id: no execution_* or executing, but progress_state reaches everyone', () =>
    withStandin(async (s) => {
      const a = await RecordingClient.connect(s.wsUrl, 'client-a');
      await submit(s, modelFreePrompt());
      await s.waitForIdle();
      await a.waitFor((m) => types(m).filter((t) => t === 'status').length >= 4);
      expect(new Set(types(a.messages))).toEqual(new Set(['status', 'progress_state']));
      await a.close();
    }));

  it('a reconnecting owner of the running prompt is told the running node', () =>
    withStandin(async (s) => {
      const first = await RecordingClient.connect(s.wsUrl, 'owner');
      await submit(s, modelFreePrompt({ sleep: { seconds: 0.6, steps: 3 } }), { client_id: 'owner' });
      await first.waitFor((m) =>
        m.some((x) => x.kind === 'text' && x.type === 'executing' && x.data.node === '5'),
      );
      await first.close();
      const again = await RecordingClient.connect(s.wsUrl, 'owner');
      expect(
        again
          .text()
          .slice(0, 2)
          .map((m) => [m.type, m.data.node ?? m.data.sid]),
      ).toEqual([
        ['status', 'owner'],
        ['executing', '5'],
      ]);
      await s.waitForIdle();
      await again.close();
    }));
});

describe('comfyui stand-in: the slow node (StandinSleep)', () => {
  it('emits progress and PNG preview frames (type 1) per step', () =>
    withStandin(async (s) => {
      const c = await RecordingClient.connect(s.wsUrl, 'p1');
      const id = await submit(s, modelFreePrompt({ sleep: { seconds: 0.15, steps: 3 } }), {
        client_id: 'p1',
      });
      await c.waitForEnd(id);
      const progress = c.text('progress').map((m) => m.data);
      expect(progress).toEqual([1, 2, 3].map((value) => ({ value, max: 3, prompt_id: id, node: '5' })));
      const step = types(c.messages).join(',');
      expect(step).toContain('progress_state,progress,binary:1,progress_state,progress,binary:1');
      for (const frame of c.binary()) {
        expect([frame.readUInt32BE(0), frame.readUInt32BE(4)]).toEqual([1, 2]); // PREVIEW_IMAGE, PNG
        const png = readPng(frame.subarray(8));
        expect([png.width, png.height]).toEqual([64, 48]);
      }
      expect(c.binary()).toHaveLength(3);
      await c.close();
    }));

  it('sends type-4 previews with metadata to clients announcing supports_preview_metadata', () =>
    withStandin(async (s) => {
      const c = await RecordingClient.connect(s.wsUrl, 'p2', { supports_preview_metadata: true });
      const id = await submit(s, modelFreePrompt({ sleep: { seconds: 0.1, steps: 2 } }), { client_id: 'p2' });
      await c.waitForEnd(id);
      expect(types(c.messages).join(',')).toContain('progress_state,binary:4,progress');
      expect(types(c.messages)).not.toContain('binary:1');
      for (const frame of c.binary()) {
        expect(frame.readUInt32BE(0)).toBe(4);
        const length = frame.readUInt32BE(4);
        const metadata = JSON.parse(frame.subarray(8, 8 + length).toString());
        expect(metadata).toEqual({
          node_id: '5',
          prompt_id: id,
          display_node_id: '5',
          parent_node_id: null,
          real_node_id: '5',
          image_type: 'image/png',
        });
        expect(readPng(frame.subarray(8 + length)).width).toBe(64);
      }
      await c.close();
    }));

  it('is interrupted between two progress steps', () =>
    withStandin(async (s) => {
      const c = await RecordingClient.connect(s.wsUrl, 'p3');
      const id = await submit(s, modelFreePrompt({ sleep: { seconds: 5, steps: 50 } }), { client_id: 'p3' });
      await c.waitFor((m) => m.some((x) => x.kind === 'text' && x.type === 'progress'));
      await http(`${s.url}/api/interrupt`, { method: 'POST' });
      await c.waitForEnd(id, 2000);
      const interrupted = c.text('execution_interrupted')[0]!.data;
      expect([interrupted.node_id, interrupted.node_type, interrupted.executed]).toEqual([
        '5',
        'StandinSleep',
        ['1', '2'],
      ]);
      await c.close();
    }));

  it('uses the delayMs knob when `seconds` is omitted', () =>
    withStandin(
      async (s) => {
        let started = Date.now();
        await submit(s, modelFreePrompt({ sleep: { steps: 2, seed: 1 } }));
        await s.waitForIdle();
        expect(Date.now() - started).toBeLessThan(500);
        s.faults.delayMs = 600;
        started = Date.now();
        await submit(s, modelFreePrompt({ sleep: { steps: 2, seed: 2 } }));
        await s.waitForIdle();
        expect(Date.now() - started).toBeGreaterThanOrEqual(600);
      },
      { delayMs: 20 },
    ));
});

describe('comfyui stand-in: sized video outputs (videoBytes)', () => {
  it('SaveVideo writes exactly videoBytes bytes, the fixture first, and /view streams them', () =>
    withStandin(async (s) => {
      const size = 3 * 1024 * 1024 + 11;
      const res = await fetch(`${s.url}/standin/faults`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ videoBytes: size }),
      });
      expect(res.status).toBe(200);
      const prompt = {
        '1': { class_type: 'EmptyImage', inputs: { width: 8, height: 8, batch_size: 2, color: 5 } },
        '2': { class_type: 'CreateVideo', inputs: { images: ['1', 0], fps: 8 } },
        '3': {
          class_type: 'SaveVideo',
          inputs: { video: ['2', 0], filename_prefix: 'v', format: 'auto', codec: 'auto' },
        },
      };
      const id = await submit(s, prompt);
      await s.waitForIdle();
      const file = (await history(s, id)).outputs['3'].images[0];
      const view = await fetch(
        `${s.url}/view?filename=${file.filename}&subfolder=${file.subfolder}&type=output`,
      );
      expect(view.headers.get('content-length')).toBe(String(size));
      const bytes = Buffer.from(await view.arrayBuffer());
      expect(bytes.length).toBe(size);
      expect(bytes.subarray(4, 8).toString('latin1')).toBe('ftyp'); // the fixture MP4 comes first
      // The filler is no run of one repeated byte (a shifted or dropped chunk changes the hash).
      expect(new Set(bytes.subarray(size - 4096)).size).toBeGreaterThan(200);
    }));
});

describe('comfyui stand-in: queue semantics', () => {
  it('front: true queues first (negative number) and runs next', () =>
    withStandin(async (s) => {
      const c = await RecordingClient.connect(s.wsUrl, 'q');
      const long = await submit(s, modelFreePrompt({ sleep: { seconds: 0.4, steps: 2 } }), {
        client_id: 'q',
      });
      const a = await submit(s, modelFreePrompt({ color: 1 }), { client_id: 'q' });
      const b = await submit(s, modelFreePrompt({ color: 2 }), { client_id: 'q' });
      const front = await postJson(`${s.url}/api/prompt`, {
        prompt: modelFreePrompt({ color: 3 }),
        client_id: 'q',
        front: true,
      });
      expect(front.json.number).toBe(-3);
      const queue = await http(`${s.url}/api/queue`);
      expect(queue.json.queue_pending.map((x: Json) => [x[0], x[1]])).toEqual([
        [-3, front.json.prompt_id],
        [2, b],
        [1, a],
      ]); // heap order, as ComfyUI returns it
      await s.waitForIdle();
      expect(c.text('execution_start').map((m) => m.data.prompt_id)).toEqual([
        long,
        front.json.prompt_id,
        a,
        b,
      ]);
      await c.close();
    }));

  it('honours prompt_id, extra_data and client_id in the queue tuple and history', () =>
    withStandin(async (s) => {
      const promptId = randomUUID();
      const res = await postJson(`${s.url}/api/prompt`, {
        prompt: modelFreePrompt(),
        prompt_id: promptId,
        client_id: 'x',
        extra_data: { extra_pnginfo: { workflow: { nodes: [] } } },
      });
      expect(res.json).toEqual({ prompt_id: promptId, number: 0, node_errors: {} });
      await s.waitForIdle();
      const entry = await history(s, promptId);
      expect(entry.prompt.slice(3)).toEqual([
        { extra_pnginfo: { workflow: { nodes: [] } }, client_id: 'x' },
        ['3'],
      ]);
      const saved = entry.outputs['3'].images[0];
      const file = await http(`${s.url}/api/view?filename=${saved.filename}&type=output`);
      expect(file.bytes.includes(Buffer.from('tEXtworkflow'))).toBe(true); // PNG metadata like SaveImage
    }));

  it('SaveImage counters and subfolders; LoadImage from an input subfolder', () =>
    withStandin(async (s) => {
      const form = uploadForm({ subfolder: 'user001' }, { name: 'x.png', bytes: makePng(5, 4, [9, 8, 7]) });
      expect((await http(`${s.url}/api/upload/image`, { method: 'POST', body: form })).json).toEqual({
        name: 'x.png',
        subfolder: 'user001',
        type: 'input',
      });
      const ids = [
        await submit(s, modelFreePrompt({ color: 1, filenamePrefix: 'user001/run' })),
        await submit(s, modelFreePrompt({ color: 2, filenamePrefix: 'user001/run' })),
        await submit(s, modelFreePrompt({ loadImage: 'user001/x.png', filenamePrefix: 'user001/run' })),
      ];
      await s.waitForIdle();
      const saved = await Promise.all(
        ids.map(async (id) => (await history(s, id)).outputs[MODEL_FREE_NODES.save].images[0]),
      );
      expect(saved).toEqual(
        [1, 2, 3].map((n) => ({ filename: `run_0000${n}_.png`, subfolder: 'user001', type: 'output' })),
      );
      expect(existsSync(join(s.dirs.output, 'user001', 'run_00003_.png'))).toBe(true);
      const view = await http(`${s.url}/api/view?filename=run_00003_.png&subfolder=user001&type=output`);
      expect(readPng(view.bytes).pixel(0, 0)).toEqual([255 - 9, 255 - 8, 255 - 7, 255]);
    }));
});

describe('comfyui stand-in: model nodes', () => {
  const sdPrompt = {
    '4': { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: 'sd15.safetensors' } },
    '6': { class_type: 'CLIPTextEncode', inputs: { text: 'a cat', clip: ['4', 1] } },
    '7': { class_type: 'CLIPTextEncode', inputs: { text: '', clip: ['4', 1] } },
    '5': { class_type: 'EmptyLatentImage', inputs: { width: 512, height: 512, batch_size: 1 } },
    '3': {
      class_type: 'KSampler',
      inputs: {
        seed: 1,
        steps: 20,
        cfg: 7,
        sampler_name: 'euler',
        scheduler: 'normal',
        denoise: 1,
        model: ['4', 0],
        positive: ['6', 0],
        negative: ['7', 0],
        latent_image: ['5', 0],
      },
    },
    '8': { class_type: 'VAEDecode', inputs: { samples: ['3', 0], vae: ['4', 2] } },
    '9': { class_type: 'SaveImage', inputs: { filename_prefix: 'sd', images: ['8', 0] } },
  };

  it('lists configured model files and fails model nodes at run time', () =>
    withStandin(
      async (s) => {
        expect((await http(`${s.url}/api/models/checkpoints`)).json).toEqual(['sd15.safetensors']);
        const c = await RecordingClient.connect(s.wsUrl, 'm');
        const id = await submit(s, sdPrompt, { client_id: 'm' });
        await c.waitForEnd(id);
        const error = c.text('execution_error')[0]!.data;
        // The loaders pass placeholders on (model-nodes.ts); the first node that needs a real model fails.
        expect(['CLIPTextEncode', 'EmptyLatentImage', 'KSampler']).toContain(error.node_type);
        expect(error.exception_message).toMatch(/^stand-in cannot run model nodes.*\n$/);
        expect((await history(s, id)).status.status_str).toBe('error');
        await c.close();
      },
      { models: { checkpoints: ['sd15.safetensors'] } },
    ));

  it('without model files the checkpoint combo is empty, so validation fails like ComfyUI', () =>
    withStandin(async (s) => {
      const res = await postJson(`${s.url}/api/prompt`, { prompt: sdPrompt });
      expect(res.status).toBe(400);
      expect(res.json.node_errors['4'].errors[0].type).toBe('value_not_in_list');
    }));
});

describe('comfyui stand-in: fault injection', () => {
  it('executionError (programmatic): fails the next prompt at a node, then runs normally', () =>
    withStandin(async (s) => {
      const c = await RecordingClient.connect(s.wsUrl, 'f1');
      s.faults.executionError({ nodeId: '2' });
      const failed = await submit(s, modelFreePrompt(), { client_id: 'f1' });
      await c.waitForEnd(failed);
      const error = c.text('execution_error')[0]!.data;
      expect([error.node_id, error.exception_type, error.executed]).toEqual(['2', 'RuntimeError', ['1']]);
      const ok = await submit(s, modelFreePrompt(), { client_id: 'f1' });
      await c.waitForEnd(ok);
      expect(c.text('execution_cached').at(-1)!.data.nodes).toEqual(['1']); // upstream result was kept
      expect((await history(s, ok)).status.status_str).toBe('success');
      await c.close();
    }));

  it('executionError over HTTP, and bad fault requests are rejected', () =>
    withStandin(async (s) => {
      const bad = await postJson(`${s.url}/standin/faults`, { explode: true });
      expect(bad.status).toBe(400);
      const set = await postJson(`${s.url}/standin/faults`, {
        executionError: { classType: 'SaveImage', exceptionType: 'OSError', message: 'disk full' },
      });
      expect(set.json.executionError).toEqual({
        classType: 'SaveImage',
        exceptionType: 'OSError',
        message: 'disk full',
      });
      const id = await submit(s, modelFreePrompt());
      await s.waitForIdle();
      const error = (await history(s, id)).status.messages.at(-1);
      expect(error[0]).toBe('execution_error');
      expect([error[1].node_id, error[1].exception_type, error[1].exception_message]).toEqual([
        '3',
        'OSError',
        'disk full\n',
      ]);
      expect((await http(`${s.url}/standin/faults`)).json.executionError).toBeNull();
    }));

  it('dieMidJob: sockets drop and the port refuses; restart() brings back an empty ComfyUI', () =>
    withStandin(async (s) => {
      const c = await RecordingClient.connect(s.wsUrl, 'f3');
      await submit(s, modelFreePrompt({ sleep: { seconds: 0.2, steps: 2 } }));
      await s.waitForIdle();
      s.faults.dieMidJob();
      await submit(s, modelFreePrompt({ sleep: { seconds: 0.2, steps: 2, seed: 9 } }), { client_id: 'f3' });
      await c.waitFor(() => c.closed);
      expect(types(c.messages)).toContain('executing');
      expect(types(c.messages)).not.toContain('execution_success');
      expect(await refused(`${s.url}/api/queue`)).toBe('ECONNREFUSED');
      expect([s.state.alive, s.state.crashed]).toEqual([false, true]);

      await s.restart();
      expect((await http(`${s.url}/api/queue`)).json).toEqual({ queue_running: [], queue_pending: [] });
      expect((await http(`${s.url}/api/history`)).json).toEqual({});
      const res = await postJson(`${s.url}/api/prompt`, { prompt: modelFreePrompt({ color: 7 }) });
      expect(res.json.number).toBe(0);
      await s.waitForIdle();
    }));

  it('hang: the prompt is accepted, then HTTP stops answering until the fault is lifted', () =>
    withStandin(async (s) => {
      await postJson(`${s.url}/standin/faults`, { hang: true });
      const id = await submit(s, modelFreePrompt());
      const held = fetch(`${s.url}/api/history/${id}`).then((r) => r.json());
      const outcome = await Promise.race([held.then(() => 'answered'), sleep(300).then(() => 'hung')]);
      expect(outcome).toBe('hung');
      expect((await http(`${s.url}/standin/faults`)).json.hung).toBe(true);
      expect(s.state.running.map((x) => x[1])).toEqual([id]);
      await postJson(`${s.url}/standin/faults`, { hang: false });
      await held;
      await s.waitForIdle();
      expect((await history(s, id)).status.status_str).toBe('success');
    }));

  it('unreachable: refuse connections or answer 503, and come back', () =>
    withStandin(async (s) => {
      await s.faults.setUnreachable(true);
      expect(await refused(`${s.url}/api/queue`)).toBe('ECONNREFUSED');
      await s.faults.setUnreachable(false);
      expect((await http(`${s.url}/api/queue`)).status).toBe(200);

      await postJson(`${s.url}/standin/faults`, { unreachable: '503' });
      expect((await http(`${s.url}/api/queue`)).status).toBe(503);
      const ws = new WebSocket(`${s.wsUrl}?clientId=u`);
      ws.on('error', () => undefined);
      const wsStatus = await new Promise((resolve) =>
        ws.on('unexpected-response', (req, res) => {
          resolve(res.statusCode);
          req.destroy();
        }),
      );
      expect(wsStatus).toBe(503);
      expect((await http(`${s.url}/standin/faults`)).json.unreachable).toBe('503');

      const set = await postJson(`${s.url}/standin/faults`, { unreachable: { mode: 'refuse', forMs: 300 } });
      expect(set.json.unreachable).toBe('refuse'); // applied right after this answer went out
      await sleep(50);
      expect(await refused(`${s.url}/api/queue`)).toBe('ECONNREFUSED');
      await sleep(400);
      expect((await http(`${s.url}/api/queue`)).status).toBe(200);
    }));
});

describe('comfyui stand-in: CLI (npm run standin)', () => {
  it('starts on its own, is steerable over HTTP and exits on a simulated crash', async () => {
    const { child, url: listening, exited } = spawnStandinCli(['--port', '0', '--delay-ms', '100']);
    try {
      const url = await listening;
      expect((await http(`${url}/api/system_stats`)).json.system.comfyui_version).toBe('0.3.64');
      await postJson(`${url}/standin/faults`, { dieMidJob: true });
      await postJson(`${url}/api/prompt`, { prompt: modelFreePrompt({ sleep: true }) });
      expect(await exited).toBe(1);
    } finally {
      child.kill('SIGTERM');
    }
  });
});

describe('modelFreePrompt()', () => {
  it('builds EmptyImage → ImageInvert → SaveImage and its sleep / LoadImage variants', () =>
    withStandin(async (s) => {
      expect(modelFreePrompt()).toEqual({
        '1': { class_type: 'EmptyImage', inputs: { width: 64, height: 48, batch_size: 1, color: 0x336699 } },
        '2': { class_type: 'ImageInvert', inputs: { image: ['1', 0] } },
        '3': { class_type: 'SaveImage', inputs: { images: ['2', 0], filename_prefix: 'ci' } },
      });
      const variants = [
        modelFreePrompt({ sleep: { seconds: 0 } }),
        modelFreePrompt({ loadImage: 'example.png' }),
      ];
      expect(variants[0]!['3']!.inputs.images).toEqual(['5', 0]);
      for (const prompt of variants) await submit(s, prompt);
      await s.waitForIdle();
      const all = Object.values<Json>((await http(`${s.url}/api/history`)).json);
      expect(all.map((h) => h.status.status_str)).toEqual(['success', 'success']);
    }));
});
