/**
 * Outputs exactly as ComfyUI reports them, under ComfyUI's own names (issues #12 and #16), through
 * the whole system: the control plane (real SQLite store), a real worker agent and the ComfyUI
 * stand-in, or with `COMFYUI_URL` a real ComfyUI (every test runs unchanged, except the recorded
 * custom node, which only the stand-in has).
 *
 * What ComfyUI's own `/history` says about the prompt the worker ran must equal what
 * `/<user>/api/history` says, except for the names: the namespace folder the agent adds goes, and
 * each counter continues the participant's own sequence (`bar_00001_`, `bar_00002_`, …).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGpu, type TestGpu } from '../../test/support/agent.js';
import { recordedVhsOutputs } from '../../test/support/comfyui-standin/media-nodes.js';
import { videoPrompt } from '../../test/support/prompts.js';
import {
  listen,
  readZip,
  RecordingSocket,
  startHarness,
  type Harness,
} from '../../test/support/gateway-kit.js';
import { waitFor } from '../../test/support/processes.js';

const REAL_COMFYUI = process.env.COMFYUI_URL?.replace(/\/+$/, '') || null;
const TOKEN = 'outputs-test-worker-token-0123456';
const PASSWORD = 'pw-user001-0123456789';
type Prompt = Record<string, { class_type: string; inputs: Record<string, unknown> }>;
type Outputs = Record<string, Record<string, unknown[]>>;

let h: Harness;
let base: string;
let gpu: TestGpu | undefined;
let auth: string;

async function get(path: string) {
  return h.app.inject({ method: 'GET', url: path, headers: { authorization: auth } });
}

async function queue(prompt: Prompt, clientId = 'outputs-e2e'): Promise<string> {
  const r = await h.app.inject({
    method: 'POST',
    url: '/user001/api/prompt',
    headers: { authorization: auth, 'content-type': 'application/json' },
    payload: { prompt, client_id: clientId },
  });
  expect(r.statusCode, r.body).toBe(200);
  return (r.json() as { prompt_id: string }).prompt_id;
}

/** The finished job's `/user001/api/history/<id>` entry. */
async function finished(id: string): Promise<{ outputs: Outputs; status: { status_str: string } }> {
  const entry = await waitFor(
    async () => {
      const r = (await get(`/user001/api/history/${id}`)).json() as Record<string, unknown>;
      return (r[id] as { outputs: Outputs; status: { status_str: string } } | undefined) ?? null;
    },
    120_000,
    `job ${id} in history`,
  );
  expect(entry.status.status_str).toBe('success');
  return entry;
}

/** ComfyUI's own history entry of the prompt the worker ran for a job (found by its namespaced prefix). */
async function comfyHistoryOf(jobId: string): Promise<Outputs> {
  const all = (await (await fetch(`${gpu!.comfyuiUrl}/history?max_items=200`)).json()) as Record<
    string,
    { prompt: [number, string, Prompt]; outputs: Outputs }
  >;
  const entry = Object.values(all).find((e) =>
    Object.values(e.prompt[2]).some((n) => String(n.inputs.filename_prefix ?? '').includes(`/${jobId}/`)),
  );
  if (!entry) throw new Error(`ComfyUI has no history of job ${jobId}`);
  return entry.outputs;
}

/** Names without what the mapping deliberately changes: namespace folder and counter digits. */
function nameless(outputs: Outputs, jobId: string): unknown {
  const ns = new RegExp(`^user001/${jobId}/?`);
  return JSON.parse(
    JSON.stringify(outputs, (key, value: unknown) => {
      if (key === 'subfolder' && typeof value === 'string') return value.replace(ns, '');
      if ((key === 'filename' || key === 'workflow') && typeof value === 'string')
        return value.replace(/_\d{5,}/, '_N');
      return value;
    }),
  ) as unknown;
}

function mediaPrompt(): Prompt {
  return {
    ...videoPrompt({ width: 32, height: 32, frames: 16, color: 0x336699, filenamePrefix: 'video/clip' }),
    '4': {
      class_type: 'SaveAnimatedWEBP',
      inputs: {
        images: ['1', 0],
        filename_prefix: 'anim',
        fps: 6,
        lossless: false,
        quality: 80,
        method: 'default',
      },
    },
    '5': { class_type: 'GetImageSize', inputs: { image: ['1', 0] } },
    '6': { class_type: 'PreviewAny', inputs: { source: ['5', 0] } },
    '7': { class_type: 'EmptyImage', inputs: { width: 16, height: 16, batch_size: 2, color: 0 } },
    '8': { class_type: 'SaveImage', inputs: { images: ['7', 0], filename_prefix: 'bar' } },
  };
}

beforeAll(async () => {
  h = await startHarness({ WORKER_TOKENS: `gpu:${TOKEN}` });
  await h.services.accounts.create('user001', 'participant', PASSWORD);
  auth = h.basic('user001', PASSWORD);
  base = await listen(h);
  gpu = await startTestGpu(h, {
    serverUrl: base,
    token: TOKEN,
    name: 'gpu-outputs',
    realComfyui: REAL_COMFYUI,
    standin: { delayMs: 50, customNodes: true },
  });
}, 60_000);

afterAll(async () => {
  await gpu?.stop();
  await h?.close();
});

describe('outputs as ComfyUI reports and names them', () => {
  it('video, animated WEBP, text and images: every entry, in order, under the participant’s own counters', async () => {
    const ws = await RecordingSocket.open(`${base.replace('http', 'ws')}/user001/ws?clientId=outputs-e2e`, {
      authorization: auth,
    });
    try {
      const first = await queue(mediaPrompt());
      const one = await finished(first);
      const second = await queue(mediaPrompt());
      const two = await finished(second);

      // The names one ComfyUI would give: subfolder as asked, counters continuing per prefix.
      expect(one.outputs['3']).toEqual({
        images: [{ filename: 'clip_00001_.mp4', subfolder: 'video', type: 'output' }],
        animated: [true],
      });
      expect(one.outputs['4']).toEqual({
        images: [{ filename: 'anim_00001_.webp', subfolder: '', type: 'output' }],
        animated: [true],
      });
      expect(one.outputs['6']).toEqual({ text: ['32'] });
      expect(one.outputs['8']).toEqual({
        images: [
          { filename: 'bar_00001_.png', subfolder: '', type: 'output' },
          { filename: 'bar_00002_.png', subfolder: '', type: 'output' },
        ],
      });
      expect(two.outputs['3']!.images).toEqual([
        { filename: 'clip_00002_.mp4', subfolder: 'video', type: 'output' },
      ]);
      expect(two.outputs['4']!.images).toEqual([
        { filename: 'anim_00002_.webp', subfolder: '', type: 'output' },
      ]);
      expect(two.outputs['8']!.images).toEqual([
        { filename: 'bar_00003_.png', subfolder: '', type: 'output' },
        { filename: 'bar_00004_.png', subfolder: '', type: 'output' },
      ]);

      // Exactly what ComfyUI itself reports, keys and entries in order, but for the names.
      for (const [id, entry] of [
        [first, one],
        [second, two],
      ] as const) {
        expect(JSON.stringify(nameless(entry.outputs, id))).toBe(
          JSON.stringify(nameless(await comfyHistoryOf(id), id)),
        );
        // /api/jobs/<id> carries the same outputs.
        expect((await get(`/user001/api/jobs/${id}`)).json().outputs).toEqual(entry.outputs);
      }

      // The live `executed` events said the same as history.
      const executed = ws
        .texts()
        .filter((m) => m.type === 'executed' && m.data.prompt_id === second)
        .map((m) => [m.data.node, m.data.output]);
      expect(Object.fromEntries(executed)).toEqual(two.outputs);

      // /view finds every file under the name history gives it.
      const clip = await get('/user001/api/view?filename=clip_00002_.mp4&subfolder=video&type=output');
      expect(clip.statusCode).toBe(200);
      expect(clip.headers['content-type']).toBe('video/mp4');
      const bar = await get('/user001/api/view?filename=bar_00004_.png&subfolder=&type=output');
      expect(bar.rawPayload.subarray(0, 8).toString('hex')).toBe('89504e470d0a1a0a');
      const webp = await get('/user001/api/view?filename=anim_00001_.webp&type=output');
      expect(webp.rawPayload.subarray(8, 12).toString()).toBe('WEBP');

      // The gallery and its zip use the same names.
      const gallery = (await get('/user001/gallery')).body;
      for (const name of ['clip_00002_.mp4', 'anim_00002_.webp', 'bar_00004_.png'])
        expect(gallery).toContain(name);
      expect(gallery).not.toContain(first);
      // Non-file entries too: the text node's output as a card, the animated nodes' files badged.
      expect(gallery).toContain('<pre class="note">32</pre>');
      expect(gallery).toMatch(/anim_00002_\.webp<\/span> <span class="badge">animated<\/span>/);
      expect(gallery).not.toMatch(/bar_00004_\.png<\/span> <span class="badge">/);
      const zip = readZip((await get('/user001/gallery/download.zip')).rawPayload);
      const names = zip.map((e) => e.name);
      // outputs.json: every job's outputs exactly as /history reports them.
      const json = zip.find((e) => e.name === 'outputs.json')!.data.toString('utf8');
      expect(JSON.parse(json)).toEqual({ [first]: one.outputs, [second]: two.outputs });
      for (const name of [
        'video/clip_00001_.mp4',
        'video/clip_00002_.mp4',
        'bar_00003_.png',
        'anim_00002_.webp',
      ])
        expect(names).toContain(name);
      expect(names.filter((n) => n.includes(first) || n.includes(second))).toEqual([]);
    } finally {
      ws.close();
    }
  }, 240_000);

  it.skipIf(REAL_COMFYUI !== null)(
    'a custom node’s own fields (VHS_VideoCombine gifs: format, frame_rate, workflow) come through',
    async () => {
      const prompt: Prompt = {
        '1': { class_type: 'EmptyImage', inputs: { width: 16, height: 16, batch_size: 4, color: 0 } },
        '12': {
          class_type: 'VHS_VideoCombine',
          inputs: {
            images: ['1', 0],
            frame_rate: 8,
            loop_count: 0,
            filename_prefix: 'AnimateDiff',
            format: 'video/h264-mp4',
            pingpong: false,
            save_output: true,
          },
        },
      };
      const a = await queue(prompt);
      const first = await finished(a);
      const b = await queue(prompt);
      const second = await finished(b);
      // As recorded (test/fixtures/custom-node-outputs), renamed; the worker's disk path is gone.
      expect(first.outputs).toEqual(recordedVhsOutputs());
      const gifs = second.outputs['12']!.gifs!;
      expect(gifs).toMatchObject([{ filename: 'AnimateDiff_00002.mp4', workflow: 'AnimateDiff_00002.png' }]);
      const view = await get('/user001/api/view?filename=AnimateDiff_00002.mp4&type=output');
      expect(view.statusCode).toBe(200);
      const recorded = (await comfyHistoryOf(b))['12']!.gifs![0] as object;
      expect(Object.keys(recorded)).toEqual([...Object.keys(gifs[0] as object), 'fullpath']);
    },
    120_000,
  );
});
