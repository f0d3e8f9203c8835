import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocketServer, type WebSocket as ServerSocket } from 'ws';
import { ComfySocket, SocketClosedError, type PromptEvent } from './comfy-socket.js';
import { encodeBinaryFrame } from './protocol.js';
import { FIXTURES_ROOT } from '../../test/support/fixtures.js';

const FIXTURES = FIXTURES_ROOT;
const transcript = (name: string) =>
  JSON.parse(readFileSync(join(FIXTURES, 'comfyui-v0.3.64', name), 'utf8')) as {
    messages: { kind: string; data: Record<string, unknown> }[];
  };

/** A WebSocket endpoint that records what clients send and lets the test push frames. */
class WsServer {
  readonly http: Server = createServer((_req, res) => res.writeHead(404).end());
  readonly wss: WebSocketServer;
  readonly clients: ServerSocket[] = [];
  readonly received: { clientId: string | null; data: unknown }[] = [];
  readonly connections: (string | null)[] = [];
  port = 0;

  constructor(opts: { autoPong?: boolean } = {}) {
    this.wss = new WebSocketServer({ server: this.http, autoPong: opts.autoPong ?? true });
    this.wss.on('connection', (ws, req) => {
      const clientId = new URL(req.url ?? '/', 'http://x').searchParams.get('clientId');
      this.connections.push(clientId);
      this.clients.push(ws);
      ws.on('message', (data) => this.received.push({ clientId, data: JSON.parse(String(data)) }));
      ws.send(
        JSON.stringify({
          type: 'status',
          data: { status: { exec_info: { queue_remaining: 0 } }, sid: clientId },
        }),
      );
    });
  }

  async start(): Promise<string> {
    await new Promise<void>((r) => this.http.listen(0, '127.0.0.1', r));
    this.port = (this.http.address() as AddressInfo).port;
    return `ws://127.0.0.1:${this.port}/ws?clientId=c1`;
  }

  get last(): ServerSocket {
    const ws = this.clients.at(-1);
    if (!ws) throw new Error('no client');
    return ws;
  }

  sendAll(frames: (object | Buffer)[]): void {
    for (const f of frames)
      this.last.send(Buffer.isBuffer(f) ? f : JSON.stringify(f), { binary: Buffer.isBuffer(f) });
  }

  async stop(): Promise<void> {
    for (const c of this.wss.clients) c.terminate();
    await new Promise<void>((r) => this.wss.close(() => r()));
    await new Promise<void>((r) => this.http.close(() => r()));
  }
}

const until = async (cond: () => boolean, ms = 3000) => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
};

const cleanup: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()?.();
});

async function setup(
  serverOpts: { autoPong?: boolean } = {},
  socketOpts: Partial<ConstructorParameters<typeof ComfySocket>[0]> = {},
) {
  const server = new WsServer(serverOpts);
  const url = await server.start();
  cleanup.push(() => server.stop());
  const socket = new ComfySocket({ url, reconnect: { initialDelayMs: 20, maxDelayMs: 100 }, ...socketOpts });
  cleanup.push(() => socket.close());
  await socket.opened();
  return { server, socket };
}

describe('ComfySocket', () => {
  it('sends feature flags first and parses the recorded run, matching every frame to its prompt', async () => {
    const { server, socket } = await setup();
    await until(() => server.received.length === 1);
    expect(server.received[0]).toEqual({
      clientId: 'c1',
      data: { type: 'feature_flags', data: { supports_preview_metadata: true } },
    });

    const seen: [string, string | null][] = [];
    socket.on('message', (m, p) => seen.push([m.type, p]));
    const binaries: [string, string | null][] = [];
    socket.on('binary', (f, p) => binaries.push([f.name, p]));

    // The binary-text run: its TEXT frame names no prompt; it belongs to the running one.
    const t = transcript('ws_transcript_binary_text_and_feature_flags.json');
    const frames = t.messages.map((m) => {
      if (m.kind === 'text') return m.data;
      const d = m.data as { node_id: string; text: string };
      return encodeBinaryFrame({ event: 3, name: 'TEXT', nodeId: d.node_id, text: d.text });
    });
    server.sendAll(frames);
    const texts = t.messages.filter((m) => m.kind === 'text').length;
    await until(() => seen.length === texts);
    await until(() => binaries.length === 1);
    const pid = 'ac280ce4-d1e3-4bfd-a1fc-bc82e3c655c5';
    expect(binaries).toEqual([['TEXT', pid]]);
    expect(seen.filter(([type]) => type === 'status').every(([, p]) => p === null)).toBe(true);
    expect(
      seen.filter(([type]) => type !== 'status' && type !== 'feature_flags').every(([, p]) => p === pid),
    ).toBe(true);
    expect(socket.currentPromptId).toBeNull();
    expect(socket.queueRemaining).toBe(0);
  });

  it("takes ComfyUI's messages uncompressed, though the server offers permessage-deflate (as aiohttp does)", async () => {
    const http = createServer((_req, res) => res.writeHead(404).end());
    const wss = new WebSocketServer({ server: http, perMessageDeflate: true });
    const offered: (string | undefined)[] = [];
    const agreed: string[] = [];
    wss.on('connection', (ws, req) => {
      offered.push(req.headers['sec-websocket-extensions']);
      agreed.push(ws.extensions);
    });
    await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
    cleanup.push(async () => {
      for (const c of wss.clients) c.terminate();
      await new Promise<void>((r) => wss.close(() => r()));
      await new Promise<void>((r) => http.close(() => r()));
    });
    const port = (http.address() as AddressInfo).port;
    const socket = new ComfySocket({ url: `ws://127.0.0.1:${port}/ws?clientId=c1` });
    cleanup.push(() => socket.close());
    await socket.opened();
    await until(() => agreed.length === 1);
    expect(offered).toEqual([undefined]);
    expect(agreed).toEqual(['']);
  });

  it('replays early messages to late subscribers and resolves waitForPrompt', async () => {
    const { server, socket } = await setup();
    const t = transcript('ws_transcript_modelfree.json');
    server.sendAll(t.messages.filter((m) => m.kind === 'text').map((m) => m.data));
    const pid = 'bfd8ecf8-c0f4-4f77-92de-01f4edffe7ce';
    await until(() => socket.currentPromptId === null && server.clients.length === 1);
    await new Promise((r) => setTimeout(r, 50));
    const events: PromptEvent[] = [];
    const off = socket.onPrompt(pid, (ev) => events.push(ev));
    off();
    expect(events.map((e) => (e.kind === 'message' ? e.message.type : e.frame.name))).toContain(
      'execution_success',
    );
    const outcome = await socket.waitForPrompt(pid);
    expect(outcome).toEqual({
      status: 'success',
      promptId: pid,
      source: 'socket',
      outputs: [
        {
          nodeId: '4',
          filename: 'ComfyUI_temp_qjgao_00001_.png',
          subfolder: '',
          type: 'temp',
          kind: 'images',
        },
        { nodeId: '3', filename: 'ci_00001_.png', subfolder: '', type: 'output', kind: 'images' },
      ],
    });
  });

  it('reports execution errors and interrupts', async () => {
    const { server, socket } = await setup();
    const err = socket.waitForPrompt('4e5f8a7c-f6f8-4c70-b3ed-49383cf25be7');
    server.sendAll(transcript('ws_transcript_execution_error.json').messages.map((m) => m.data));
    await expect(err).resolves.toMatchObject({
      status: 'error',
      error: { node_id: '1', node_type: 'LoadImage', exception_type: 'PIL.UnidentifiedImageError' },
    });
    const interrupted = socket.waitForPrompt('p-int');
    server.sendAll([
      { type: 'execution_start', data: { prompt_id: 'p-int', timestamp: 1 } },
      {
        type: 'execution_interrupted',
        data: {
          prompt_id: 'p-int',
          node_id: '3',
          node_type: 'ImageScale',
          executed: ['1', '2'],
          timestamp: 2,
        },
      },
    ]);
    await expect(interrupted).resolves.toMatchObject({
      status: 'interrupted',
      interrupted: { executed: ['1', '2'] },
    });
  });

  it('attributes previews: metadata names the prompt, older frames go to the running prompt', async () => {
    const { server, socket } = await setup();
    const got: [number, string | null][] = [];
    socket.on('binary', (f, p, raw) => {
      expect(Buffer.isBuffer(raw)).toBe(true);
      got.push([f.event, p]);
    });
    const img = Buffer.from([0xff, 0xd8, 0xff]);
    server.sendAll([
      encodeBinaryFrame({ event: 1, name: 'PREVIEW_IMAGE', format: 1, mime: 'image/jpeg', image: img }),
      { type: 'executing', data: { node: '5', display_node: '5', prompt_id: 'p1' } },
      encodeBinaryFrame({ event: 1, name: 'PREVIEW_IMAGE', format: 1, mime: 'image/jpeg', image: img }),
      encodeBinaryFrame({
        event: 4,
        name: 'PREVIEW_IMAGE_WITH_METADATA',
        metadata: { node_id: '5', prompt_id: 'p0' },
        mime: 'image/jpeg',
        image: img,
      }),
      { type: 'progress', data: { value: 1, max: 2, prompt_id: null, node: '5' } },
    ]);
    const progress: (string | null)[] = [];
    socket.on('message', (m, p) => m.type === 'progress' && progress.push(p));
    await until(() => got.length === 3 && progress.length === 1);
    expect(got).toEqual([
      [1, null],
      [1, 'p1'],
      [4, 'p0'],
    ]);
    expect(progress).toEqual(['p1']);
  });

  it('keeps unknown and invalid frames apart', async () => {
    const { server, socket } = await setup();
    const other: string[] = [];
    const errors: string[] = [];
    socket.on('other', (m) => other.push(m.type));
    socket.on('error', (e) => errors.push(e.message));
    server.last.send('{"type":"crystools.monitor","data":{}}');
    server.last.send('not json');
    server.last.send(Buffer.from([0, 0]), { binary: true });
    await until(() => other.length === 1 && errors.length === 2);
    expect(other).toEqual(['crystools.monitor']);
  });

  it('reconnects with the same client id after a drop, with growing delays', async () => {
    const { server, socket } = await setup();
    const delays: number[] = [];
    const opens: boolean[] = [];
    socket.on('reconnecting', (i) => delays.push(i.delayMs));
    socket.on('open', (i) => opens.push(i.reconnected));
    await until(() => server.received.length === 1);
    server.last.terminate();
    await until(() => opens.length === 1);
    expect(opens).toEqual([true]);
    expect(server.connections).toEqual(['c1', 'c1']);
    // Feature flags are sent again on the new connection.
    await until(
      () => server.received.filter((r) => (r.data as { type: string }).type === 'feature_flags').length === 2,
    );

    // Server gone: attempts back off (20, 40, 80, 100 ms ± 20%) until it returns.
    const port = server.port;
    await server.stop();
    await until(() => delays.length >= 5, 5000);
    expect(delays[1]).toBeGreaterThan(16);
    expect(delays[2]).toBeGreaterThan((delays[1] ?? 0) * 1.3);
    expect(Math.max(...delays)).toBeLessThanOrEqual(120);
    const again = new WsServer();
    again.http.listen(port, '127.0.0.1');
    cleanup.push(() => again.stop());
    await until(() => opens.length === 2, 5000);
    expect(socket.connected).toBe(true);
  });

  it('drops a connection that stops answering pings', async () => {
    const { server, socket } = await setup({ autoPong: false }, { heartbeatMs: 60 });
    const closes: number[] = [];
    socket.on('close', (i) => closes.push(i.code));
    await until(() => closes.length >= 1, 2000);
    await until(() => server.connections.length >= 2, 2000);
  });

  it('stays up while pongs come back', async () => {
    const { server, socket } = await setup({}, { heartbeatMs: 40 });
    await new Promise((r) => setTimeout(r, 250));
    expect(server.connections).toHaveLength(1);
    expect(socket.connected).toBe(true);
  });

  it('close() stops reconnecting and rejects pending waits', async () => {
    const { server, socket } = await setup({}, { reconnect: true });
    const wait = socket.waitForPrompt('never');
    const ac = new AbortController();
    const aborted = socket.waitForPrompt('never2', { signal: ac.signal });
    ac.abort(new Error('stop'));
    await expect(aborted).rejects.toThrow('stop');
    const waitRejects = expect(wait).rejects.toBeInstanceOf(SocketClosedError);
    await socket.close();
    await waitRejects;
    await expect(socket.waitForPrompt('x')).rejects.toBeInstanceOf(SocketClosedError);
    await new Promise((r) => setTimeout(r, 100));
    expect(server.connections).toHaveLength(1);
    expect(socket.sendJson({ a: 1 })).toBe(false);
  });

  it('without reconnect, a drop is final', async () => {
    const { server, socket } = await setup({}, { reconnect: false, featureFlags: null });
    const closes: boolean[] = [];
    socket.on('close', (i) => closes.push(i.willReconnect));
    server.last.terminate();
    await until(() => closes.length === 1);
    expect(closes).toEqual([false]);
    await new Promise((r) => setTimeout(r, 80));
    expect(server.connections).toHaveLength(1);
    expect(server.received).toEqual([]);
  });
});
