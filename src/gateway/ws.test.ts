import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { encodeBinaryFrame } from '../comfy/protocol.js';
import { modelFreePrompt } from '../../test/support/prompts.js';
import {
  RecordingSocket,
  listen,
  runJobAsWorker,
  startHarness,
  tinyPng,
  uploadEnv,
  type Harness,
} from '../../test/support/gateway-kit.js';

let h: Harness;
let base: string;
let alice: string;
let bob: string;
const sockets: RecordingSocket[] = [];

beforeEach(async () => {
  h = await startHarness();
  alice = await h.addUser('user001');
  bob = await h.addUser('user002');
  await uploadEnv(h);
  base = await listen(h);
});
afterEach(async () => {
  for (const s of sockets.splice(0)) s.close();
  await h.close();
});

async function open(user: string, auth: string, clientId?: string): Promise<RecordingSocket> {
  const url = `${base.replace('http', 'ws')}/${user}/ws${clientId ? `?clientId=${clientId}` : ''}`;
  const s = await RecordingSocket.open(url, { authorization: auth });
  sockets.push(s);
  await s.waitFor((r) => r.texts().some((m) => m.type === 'status'));
  return s;
}

async function queuePrompt(user: string, auth: string, clientId: string): Promise<string> {
  const r = await fetch(`${base}/${user}/api/prompt`, {
    method: 'POST',
    headers: { authorization: auth, 'content-type': 'application/json' },
    body: JSON.stringify({ prompt: modelFreePrompt(), client_id: clientId }),
  });
  expect(r.status).toBe(200);
  return ((await r.json()) as { prompt_id: string }).prompt_id;
}

const previewJpeg = () =>
  encodeBinaryFrame({
    event: 1,
    name: 'PREVIEW_IMAGE',
    format: 1,
    mime: 'image/jpeg',
    image: Buffer.from('fake-jpeg'),
  });

describe('/<user>/ws', () => {
  it('does the ComfyUI handshake and feature_flags negotiation', async () => {
    const s = await open('user001', alice, 'tab-a');
    expect(s.texts()[0]).toEqual({
      type: 'status',
      data: { status: { exec_info: { queue_remaining: 0 } }, sid: 'tab-a' },
    });
    s.ws.send(JSON.stringify({ type: 'feature_flags', data: { supports_preview_metadata: true } }));
    await s.waitFor((r) => r.texts().some((m) => m.type === 'feature_flags'));
    const ff = s.texts().find((m) => m.type === 'feature_flags')!;
    expect(ff.data.supports_preview_metadata).toBe(true);
    const anon = await RecordingSocket.open(`${base.replace('http', 'ws')}/user001/ws`, {}).catch(
      (e: Error) => e,
    );
    expect(anon).toBeInstanceOf(Error);
    expect(String(anon)).toMatch(/401/);
    const other = await RecordingSocket.open(`${base.replace('http', 'ws')}/user001/ws`, {
      authorization: bob,
    }).catch((e: Error) => e);
    expect(String(other)).toMatch(/403/);
  });

  it('gives a clientId when none is sent', async () => {
    const s = await open('user001', alice);
    expect(typeof s.texts()[0]!.data.sid).toBe('string');
    expect((s.texts()[0]!.data.sid as string).length).toBeGreaterThan(10);
  });

  it('sends each user their own queue_remaining and their own events only', async () => {
    const a = await open('user001', alice, 'tab-a');
    const b = await open('user002', bob, 'tab-b');
    const id = await queuePrompt('user001', alice, 'tab-a');
    await a.waitFor((r) =>
      r
        .texts()
        .some(
          (m) =>
            m.type === 'status' &&
            (m.data.status as { exec_info: { queue_remaining: number } }).exec_info.queue_remaining === 1,
        ),
    );
    await runJobAsWorker(h, { preview: previewJpeg() });
    await a.waitFor((r) => r.texts().some((m) => m.type === 'executing' && m.data.node === null));
    const types = a.texts().map((m) => m.type);
    expect(types).toContain('execution_start');
    expect(types).toContain('progress');
    expect(types).toContain('executed');
    expect(types).toContain('execution_success');
    expect(
      a
        .texts()
        .filter((m) => m.type === 'progress')
        .every((m) => m.data.prompt_id === id),
    ).toBe(true);
    // No feature flags announced: the preview arrives as ComfyUI's type 1 frame.
    expect(a.binaries()).toHaveLength(1);
    expect(a.binaries()[0]!.readUInt32BE(0)).toBe(1);
    await new Promise((r) => setTimeout(r, 200));
    expect(b.texts().map((m) => m.type)).toEqual(['status']);
    expect(b.binaries()).toHaveLength(0);
    expect(JSON.stringify(b.messages)).not.toContain(id);
  });

  it('sends type 4 previews to clients that support metadata', async () => {
    const a = await open('user001', alice, 'tab-a');
    a.ws.send(JSON.stringify({ type: 'feature_flags', data: { supports_preview_metadata: true } }));
    await a.waitFor((r) => r.texts().some((m) => m.type === 'feature_flags'));
    const id = await queuePrompt('user001', alice, 'tab-a');
    await runJobAsWorker(h, { preview: previewJpeg() });
    await a.waitFor((r) => r.binaries().length === 1);
    const frame = a.binaries()[0]!;
    expect(frame.readUInt32BE(0)).toBe(4);
    const len = frame.readUInt32BE(4);
    const meta = JSON.parse(frame.subarray(8, 8 + len).toString('utf8'));
    expect(meta).toMatchObject({ prompt_id: id, node_id: '3', image_type: 'image/jpeg' });
    expect(frame.subarray(8 + len).toString()).toBe('fake-jpeg');
  });

  it('routes events to the queuing tab, or to every tab of the owner when it is gone', async () => {
    const a1 = await open('user001', alice, 'tab-1');
    const a2 = await open('user001', alice, 'tab-2');
    await queuePrompt('user001', alice, 'tab-1');
    await runJobAsWorker(h);
    await a1.waitFor((r) => r.texts().some((m) => m.type === 'execution_success'));
    await new Promise((r) => setTimeout(r, 100));
    expect(a2.texts().some((m) => m.type === 'execution_success')).toBe(false);

    await queuePrompt('user001', alice, 'tab-gone');
    await runJobAsWorker(h);
    await a1.waitFor((r) => r.texts().filter((m) => m.type === 'execution_success').length === 2);
    await a2.waitFor((r) => r.texts().some((m) => m.type === 'execution_success'));
  });

  it("replays the running job's state to a tab that reconnects with the same clientId", async () => {
    const a = await open('user001', alice, 'tab-r');
    const id = await queuePrompt('user001', alice, 'tab-r');
    const job = await h.services.queue.claim('w', []);
    const pub = (type: string, data: Record<string, unknown>) =>
      h.services.bus.publish({
        kind: 'event',
        jobId: job!.id,
        user: 'user001',
        workerId: 'w',
        event: { type, data },
      });
    pub('execution_start', { prompt_id: id, timestamp: 1 });
    pub('executing', { node: '2', display_node: '2', prompt_id: id });
    pub('progress_state', {
      prompt_id: id,
      nodes: { 2: { value: 1, max: 4, state: 'running', node_id: '2', prompt_id: 'worker-side-id' } },
    });
    pub('progress', { value: 1, max: 4, prompt_id: 'worker-side-id', node: '2' });
    await a.waitFor((r) => r.texts().some((m) => m.type === 'progress'));
    a.close();
    const again = await open('user001', alice, 'tab-r');
    await again.waitFor((r) => r.texts().some((m) => m.type === 'progress'));
    const types = again.texts().map((m) => m.type);
    expect(types).toEqual(['status', 'executing', 'progress_state', 'progress']);
    const progress = again.texts().find((m) => m.type === 'progress')!;
    // prompt ids from the worker's ComfyUI are rewritten to ours.
    expect(progress.data.prompt_id).toBe(id);
    const ps = again.texts().find((m) => m.type === 'progress_state')!;
    expect((ps.data.nodes as Record<string, { prompt_id: string }>)['2']!.prompt_id).toBe(id);
  });

  it("ends a cancelled running job ComfyUI's way when the worker cannot", async () => {
    const a = await open('user001', alice, 'tab-c');
    const id = await queuePrompt('user001', alice, 'tab-c');
    const job = await h.services.queue.claim('w', []);
    h.services.bus.publish({
      kind: 'event',
      jobId: job!.id,
      user: 'user001',
      workerId: 'w',
      event: { type: 'execution_start', data: { prompt_id: id } },
    });
    h.services.bus.publish({
      kind: 'event',
      jobId: job!.id,
      user: 'user001',
      workerId: 'w',
      event: { type: 'executing', data: { node: '2', prompt_id: id } },
    });
    await fetch(`${base}/user001/api/interrupt`, {
      method: 'POST',
      headers: { authorization: alice, 'content-type': 'application/json' },
      body: JSON.stringify({ prompt_id: id }),
    });
    await a.waitFor((r) => r.texts().some((m) => m.type === 'executing' && m.data.node === null));
    const interrupted = a.texts().find((m) => m.type === 'execution_interrupted')!;
    expect(interrupted.data).toMatchObject({ prompt_id: id, node_id: '2' });
    const last = a.texts().at(-1)!;
    expect(last).toEqual({ type: 'executing', data: { node: null, prompt_id: id } });
  });

  it('survives garbage frames', async () => {
    const a = await open('user001', alice, 'tab-g');
    a.ws.send('not json at all {');
    a.ws.send(Buffer.from([0, 1, 2, 3, 255]), { binary: true });
    a.ws.send(JSON.stringify({ type: 'feature_flags', data: 'not-an-object' }));
    a.ws.send(JSON.stringify(null));
    a.ws.send(JSON.stringify([1, 2, 3]));
    // Below the 64 kB browser limit (a larger frame closes the socket: src/http/ws-limits.test.ts).
    a.ws.send('x'.repeat(60_000));
    await new Promise((r) => setTimeout(r, 200));
    expect(a.ws.readyState).toBe(WebSocket.OPEN);
    await queuePrompt('user001', alice, 'tab-g');
    await a.waitFor((r) => r.texts().filter((m) => m.type === 'status').length >= 2);
    const s = await fetch(`${base}/user001/api/prompt`, { headers: { authorization: alice } });
    expect(s.status).toBe(200);
    expect(tinyPng().length).toBeGreaterThan(0);
  });
});
