/**
 * ComfyClient against a tiny local HTTP server that answers with the recorded ComfyUI bodies and
 * misbehaves on demand (stalls, 500s, broken JSON). The end-to-end runs against the ComfyUI
 * stand-in are in `comfy-client.standin.test.ts`.
 */
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  ComfyHttpError,
  ComfyPromptError,
  ComfyProtocolError,
  ComfyTimeoutError,
  ComfyUnavailableError,
} from './client-errors.js';
import { ComfyClient } from './comfy-client.js';
import { jobErrorFromOutcome } from './prompt-outcome.js';
import { FIXTURES_ROOT } from '../../test/support/fixtures.js';

const FIXTURES = FIXTURES_ROOT;
const fx = (name: string): unknown =>
  JSON.parse(readFileSync(join(FIXTURES, 'comfyui-v0.3.64', name), 'utf8'));

interface Seen {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: IncomingMessage['headers'];
  body: Buffer;
}

type Handler = (req: Seen, res: ServerResponse) => unknown;

const seen: Seen[] = [];
const routes = new Map<string, Handler>();
let server: Server;
let base = '';

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(text),
  });
  res.end(text);
}

function defaultRoutes(): void {
  routes.clear();
  routes.set('GET /api/system_stats', (_q, res) => json(res, 200, fx('system_stats.json')));
  routes.set('GET /api/object_info', (_q, res) =>
    json(res, 200, { ...(fx('object_info.json') as object), Broken: { input: 'nope' } }),
  );
  routes.set('GET /api/embeddings', (_q, res) => json(res, 200, fx('embeddings.json')));
  routes.set('GET /api/extensions', (_q, res) => json(res, 200, ['/extensions/core/a.js']));
  routes.set('GET /api/models', (_q, res) => json(res, 200, fx('models.json')));
  routes.set('GET /api/models/checkpoints', (_q, res) => json(res, 200, ['sd15.safetensors']));
  routes.set('GET /api/queue', (_q, res) => json(res, 200, fx('queue_empty.json')));
  routes.set('GET /api/prompt', (_q, res) => json(res, 200, fx('prompt_get.json')));
  for (const p of ['/api/queue', '/api/interrupt', '/api/history']) {
    routes.set(`POST ${p}`, (_q, res) => res.writeHead(200, { 'Content-Length': 0 }).end());
  }
  routes.set('POST /api/prompt', (q, res) => {
    const body = JSON.parse(q.body.toString()) as {
      prompt: Record<string, { class_type: string }>;
      prompt_id?: string;
    };
    if (Object.values(body.prompt).some((n) => n.class_type === 'NoSuchNode_Fixture')) {
      const errors = fx('prompt_errors.json') as { cases: { response: { body: unknown } }[] };
      return json(res, 400, errors.cases[0]?.response.body);
    }
    json(res, 200, { prompt_id: body.prompt_id ?? 'generated', number: 7, node_errors: {} });
  });
}

beforeAll(async () => {
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://x');
      const s: Seen = {
        method: req.method ?? '',
        path: url.pathname,
        query: url.searchParams,
        headers: req.headers,
        body: Buffer.concat(chunks),
      };
      seen.push(s);
      const handler =
        routes.get(`${s.method} ${s.path}`) ?? routes.get(`${s.method} ${s.path.replace(/\/[^/]+$/, '/*')}`);
      if (!handler) return res.writeHead(404, { 'Content-Length': 0 }).end();
      void handler(s, res);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
});

beforeEach(() => {
  seen.length = 0;
  defaultRoutes();
});

const client = (opts: Partial<ConstructorParameters<typeof ComfyClient>[0]> = {}) =>
  new ComfyClient({ baseUrl: `${base}/`, clientId: 'worker-1', ...opts });

describe('ComfyClient requests', () => {
  it('reads the information routes', async () => {
    const c = client();
    expect((await c.systemStats()).system.comfyui_version).toBe('0.3.64');
    expect(await c.embeddings()).toEqual([]);
    expect(await c.extensions()).toEqual(['/extensions/core/a.js']);
    expect(await c.models()).toContain('diffusion_models');
    expect(await c.modelsIn('checkpoints')).toEqual(['sd15.safetensors']);
    expect(await c.modelsIn('not_a_folder')).toBeNull();
    const { objectInfo, invalid } = await c.objectInfoDetailed();
    expect(invalid).toEqual(['Broken']);
    expect(Object.keys(objectInfo)).toHaveLength(376);
    expect(await c.getQueue()).toEqual({ queue_running: [], queue_pending: [] });
    expect(await c.queueInfo()).toEqual({ exec_info: { queue_remaining: 0 } });
  });

  it('queues a prompt with our client id and options', async () => {
    const c = client();
    const prompt = { '1': { class_type: 'PreviewAny', inputs: { source: 'x' } } };
    const r = await c.queuePrompt(prompt, {
      promptId: 'job-1',
      front: true,
      extraData: { extra_pnginfo: { workflow: { nodes: [] } } },
      partialExecutionTargets: ['1'],
    });
    expect(r).toEqual({ prompt_id: 'job-1', number: 7, node_errors: {} });
    const sent = seen.find((s) => s.path === '/api/prompt');
    expect(sent?.headers['content-type']).toBe('application/json');
    expect(JSON.parse(sent?.body.toString() ?? '')).toEqual({
      prompt,
      client_id: 'worker-1',
      prompt_id: 'job-1',
      front: true,
      extra_data: { extra_pnginfo: { workflow: { nodes: [] } } },
      partial_execution_targets: ['1'],
    });
    await c.queuePrompt(prompt);
    expect(Object.keys(JSON.parse(seen.at(-1)?.body.toString() ?? ''))).toEqual(['prompt', 'client_id']);
  });

  it("rejects a 400 with ComfyUI's error body", async () => {
    const err = await client()
      .queuePrompt({ '9': { class_type: 'NoSuchNode_Fixture', inputs: {} } })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ComfyPromptError);
    const e = err as ComfyPromptError;
    expect(e.status).toBe(400);
    expect(e.body).toEqual({
      error: {
        type: 'invalid_prompt',
        message: 'Cannot execute because node NoSuchNode_Fixture does not exist.',
        details: "Node ID '#9'",
        extra_info: {},
      },
      node_errors: {},
    });
    expect(e.message).toContain('does not exist');
  });

  it('turns other failures into typed errors', async () => {
    routes.set('POST /api/prompt', (_q, res) => {
      res
        .writeHead(500, { 'Content-Type': 'text/plain' })
        .end('500 Internal Server Error\n\nServer got itself in trouble');
    });
    const c = client();
    const prompt = { '1': { class_type: 'X', inputs: {} } };
    await expect(c.queuePrompt(prompt)).rejects.toMatchObject({ name: 'ComfyHttpError', status: 500 });
    routes.set('POST /api/prompt', (_q, res) => res.writeHead(400, { 'Content-Length': 0 }).end());
    const e400 = await c.queuePrompt(prompt).catch((e: unknown) => e);
    expect(e400).toBeInstanceOf(ComfyHttpError);
    expect(e400).not.toBeInstanceOf(ComfyPromptError);
    routes.set('GET /api/system_stats', (_q, res) => res.writeHead(200).end('{"system":'));
    await expect(c.systemStats()).rejects.toBeInstanceOf(ComfyProtocolError);
    routes.set('GET /api/system_stats', (_q, res) => json(res, 200, { system: {} }));
    await expect(c.systemStats()).rejects.toBeInstanceOf(ComfyProtocolError);
  });

  it('times out, honours the caller signal, and reports an unreachable ComfyUI', async () => {
    routes.set('GET /api/queue', () => undefined); // never answers
    const c = client({ timeoutMs: 150 });
    const t0 = Date.now();
    const err = await c.getQueue().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ComfyTimeoutError);
    expect(err).toMatchObject({ method: 'GET', path: '/queue', timeoutMs: 150 });
    expect(Date.now() - t0).toBeLessThan(2000);
    const ac = new AbortController();
    setTimeout(() => ac.abort(new Error('cancelled by caller')), 20);
    await expect(client().getQueue({ signal: ac.signal })).rejects.toThrow('cancelled by caller');
    // Slow body: the timeout covers reading the JSON too.
    routes.set('GET /api/queue', (_q, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.write('{"queue_running": [');
    });
    await expect(c.getQueue()).rejects.toBeInstanceOf(ComfyTimeoutError);

    const dead = new ComfyClient({ baseUrl: 'http://127.0.0.1:9', clientId: 'x', timeoutMs: 2000 });
    await expect(dead.systemStats()).rejects.toBeInstanceOf(ComfyUnavailableError);
    expect(await dead.health()).toBe(false);
    expect(await dead.ready()).toMatchObject({ ready: false });
  });

  it('sends interrupt, queue and history changes as ComfyUI expects', async () => {
    const c = client();
    await c.interrupt();
    await c.interrupt('p-1');
    await c.deleteFromQueue(['a', 'b']);
    await c.clearQueue();
    await c.deleteHistory(['a']);
    expect(seen.map((s) => [s.path, s.body.toString()])).toEqual([
      ['/api/interrupt', ''],
      ['/api/interrupt', '{"prompt_id":"p-1"}'],
      ['/api/queue', '{"delete":["a","b"]}'],
      ['/api/queue', '{"clear":true}'],
      ['/api/history', '{"delete":["a"]}'],
    ]);
    routes.set('POST /api/interrupt', (_q, res) => res.writeHead(403).end());
    await expect(c.interrupt()).rejects.toMatchObject({ status: 403 });
  });

  it('uses another route prefix and extra headers', async () => {
    routes.set('GET /system_stats', (_q, res) => json(res, 200, fx('system_stats.json')));
    await client({ apiPrefix: '', headers: { Authorization: 'Bearer t' } }).systemStats();
    expect(seen[0]?.path).toBe('/system_stats');
    expect(seen[0]?.headers.authorization).toBe('Bearer t');
  });

  it('tells health (answers at all) from ready (stats and nodes)', async () => {
    const c = client();
    expect(await c.health()).toBe(true);
    expect(await c.ready()).toMatchObject({ ready: true, nodeCount: 376 });
    routes.set('GET /api/object_info', (_q, res) => json(res, 200, {}));
    expect(await c.ready()).toEqual({ ready: false, reason: 'object_info lists no nodes yet' });
    routes.set('GET /api/system_stats', (_q, res) => res.writeHead(503).end());
    expect(await c.health()).toBe(false);
    routes.set('GET /api/system_stats', (_q, res) => res.writeHead(404).end());
    expect(await c.health()).toBe(true);
    expect((await c.ready()).ready).toBe(false);
  });

  it('builds the WebSocket URL', () => {
    expect(client().socketUrl()).toBe(`${base.replace('http', 'ws')}/ws?clientId=worker-1`);
    expect(new ComfyClient({ baseUrl: 'https://gpu.example/comfy', clientId: 'a b' }).socketUrl()).toBe(
      'wss://gpu.example/comfy/ws?clientId=a+b',
    );
  });
});

describe('ComfyClient connections', () => {
  it('keeps connections alive, and sends a request again when a kept-alive one was reset under it', async () => {
    // A raw server: answers the first request on each connection (keep-alive), and drops the
    // connection without a word on the second, as a server closing an idle connection does.
    const connections: Socket[] = [];
    let requests = 0;
    const raw = createNetServer((socket) => {
      connections.push(socket);
      let onThis = 0;
      socket.on('data', (chunk: Buffer) => {
        if (!chunk.includes('\r\n\r\n')) return;
        requests += 1;
        onThis += 1;
        if (onThis === 1) {
          const body = JSON.stringify({ exec_info: { queue_remaining: requests } });
          socket.write(
            `HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: keep-alive\r\n\r\n${body}`,
          );
        } else socket.resetAndDestroy();
      });
    });
    await new Promise<void>((r) => raw.listen(0, '127.0.0.1', r));
    try {
      const c = new ComfyClient({
        baseUrl: `http://127.0.0.1:${(raw.address() as AddressInfo).port}`,
        clientId: 'k',
      });
      expect(await c.queueInfo()).toEqual({ exec_info: { queue_remaining: 1 } });
      // The second request goes out on the kept-alive connection, which the server resets: it is
      // sent once more on a new one and answered there.
      expect(await c.queueInfo()).toEqual({ exec_info: { queue_remaining: 3 } });
      expect(connections).toHaveLength(2);
      expect(requests).toBe(3);
    } finally {
      for (const s of connections) s.destroy();
      await new Promise<void>((r) => raw.close(() => r()));
    }
  });
});

describe('ComfyClient files', () => {
  it('streams /view without waiting for the whole file', async () => {
    let release: () => void = () => undefined;
    const released = new Promise<void>((r) => (release = r));
    routes.set('GET /api/view', async (_q, res) => {
      res.writeHead(200, { 'Content-Type': 'image/png', 'Content-Length': 6 });
      res.write('abc');
      await released;
      res.end('def');
    });
    const stream = await client().view(
      { filename: 'ci_00001_.png', subfolder: 'alice/j', type: 'temp' },
      { preview: 'webp;50' },
    );
    expect(stream.contentType).toBe('image/png');
    expect(stream.contentLength).toBe(6);
    const it = stream[Symbol.asyncIterator]();
    const first = await it.next();
    expect(Buffer.from(first.value as Buffer).toString()).toBe('abc');
    release();
    let rest = '';
    for (let n = await it.next(); !n.done; n = await it.next())
      rest += Buffer.from(n.value as Buffer).toString();
    expect(rest).toBe('def');
    const q = seen[0]?.query;
    expect(Object.fromEntries(q ?? [])).toEqual({
      filename: 'ci_00001_.png',
      subfolder: 'alice/j',
      type: 'temp',
      preview: 'webp;50',
    });
  });

  it('ends a stalled download with a timeout and reports a missing file', async () => {
    routes.set('GET /api/view', (_q, res) => {
      res.writeHead(200, { 'Content-Type': 'video/mp4' });
      res.write('partial');
    });
    const stream = await client().view({ filename: 'v.mp4' }, { idleTimeoutMs: 150 });
    const got: Buffer[] = [];
    const err = await (async () => {
      for await (const chunk of stream) got.push(chunk as Buffer);
    })().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ComfyTimeoutError);
    expect(Buffer.concat(got).toString()).toBe('partial');
    expect(Object.fromEntries(seen[0]?.query ?? [])).toEqual({
      filename: 'v.mp4',
      subfolder: '',
      type: 'output',
    });

    routes.delete('GET /api/view');
    await expect(client().view({ filename: 'missing.png' })).rejects.toMatchObject({ status: 404 });
  });

  it('survives the caller aborting a download before it listens (a job dropped while its upload opens)', async () => {
    routes.set('GET /api/view', (_q, res) => {
      res.writeHead(200, { 'Content-Type': 'video/mp4' });
      res.write('partial');
    });
    const ac = new AbortController();
    const stream = await client().view({ filename: 'v.mp4' }, { signal: ac.signal });
    ac.abort(new Error('job dropped'));
    // No listener yet: the abort's error must not be an uncaught exception (vitest fails on one).
    await new Promise((r) => setTimeout(r, 100));
    expect(stream.destroyed).toBe(true);
    routes.delete('GET /api/view');
  });

  it('lets the caller abandon a download', async () => {
    let closed = false;
    routes.set('GET /api/view', (_q, res) => {
      res.writeHead(200, { 'Content-Type': 'application/octet-stream' });
      const timer = setInterval(() => res.write(Buffer.alloc(1024)), 5);
      res.on('close', () => {
        closed = true;
        clearInterval(timer);
      });
    });
    const stream = await client().view({ filename: 'endless.bin' });
    await new Promise<void>((r) => stream.once('data', () => r()));
    stream.destroy();
    const end = Date.now() + 2000;
    while (!closed && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
    expect(closed).toBe(true);
  });

  /** Splits a multipart body into its parts (test side only; the client streams). */
  function multipart(s: Seen): Record<string, { filename?: string; type?: string; data: Buffer }> {
    const boundary = /boundary=(.+)$/.exec(String(s.headers['content-type']))?.[1] ?? '';
    const parts: Record<string, { filename?: string; type?: string; data: Buffer }> = {};
    const sep = Buffer.from(`--${boundary}`);
    let at = s.body.indexOf(sep);
    while (at >= 0) {
      const next = s.body.indexOf(sep, at + sep.length);
      if (next < 0) break;
      const part = s.body.subarray(at + sep.length + 2, next - 2);
      const headEnd = part.indexOf('\r\n\r\n');
      const head = part.subarray(0, headEnd).toString();
      const name = /name="([^"]*)"/.exec(head)?.[1] ?? '';
      parts[name] = {
        filename: /filename="([^"]*)"/.exec(head)?.[1],
        type: /Content-Type: (.+)/i.exec(head)?.[1],
        data: part.subarray(headEnd + 4),
      };
      at = next;
    }
    return parts;
  }

  it('uploads from a Buffer and from a stream, streaming the body', async () => {
    routes.set('POST /api/upload/image', (q, res) => {
      const p = multipart(q);
      json(res, 200, {
        name: p.image?.filename,
        subfolder: p.subfolder?.data.toString() ?? '',
        type: p.type?.data.toString(),
      });
    });
    const c = client();
    const png = Buffer.from('89504e470d0a1a0a0102', 'hex');
    const r1 = await c.uploadImage(png, {
      filename: 'a.png',
      subfolder: 'alice',
      overwrite: true,
      contentType: 'image/png',
    });
    expect(r1).toEqual({ name: 'a.png', subfolder: 'alice', type: 'input' });
    const p1 = multipart(seen[0] as Seen);
    expect(p1.image?.data.equals(png)).toBe(true);
    expect(p1.image?.type).toBe('image/png');
    expect(p1.overwrite?.data.toString()).toBe('true');
    expect(Number(seen[0]?.headers['content-length'])).toBe(seen[0]?.body.length);

    const big = Buffer.alloc(3 * 1024 * 1024 + 17, 7);
    const chunks = () =>
      Readable.from(
        (function* () {
          for (let i = 0; i < big.length; i += 65536) yield big.subarray(i, i + 65536);
        })(),
      );
    const r2 = await c.uploadImage(chunks(), { filename: 'say "hi".png', type: 'temp' });
    expect(r2).toEqual({ name: 'say %22hi%22.png', subfolder: '', type: 'temp' });
    expect(seen[1]?.headers['transfer-encoding']).toBe('chunked');
    expect(multipart(seen[1] as Seen).image?.data.equals(big)).toBe(true);
    expect(multipart(seen[1] as Seen).subfolder).toBeUndefined();

    await c.uploadImage(chunks(), { filename: 'b.bin', size: big.length });
    expect(Number(seen[2]?.headers['content-length'])).toBe(seen[2]?.body.length);

    const broken = new Readable({
      read() {
        this.destroy(new Error('disk read failed'));
      },
    });
    await expect(c.uploadImage(broken, { filename: 'c.png' })).rejects.toThrow('disk read failed');

    routes.set('POST /api/upload/image', (_q, res) => res.writeHead(400, { 'Content-Length': 0 }).end());
    await expect(c.uploadImage(png, { filename: 'x.png', subfolder: '../escape' })).rejects.toMatchObject({
      status: 400,
    });
  });
});

describe('ComfyClient.waitForCompletion without a socket', () => {
  it('polls /history until the entry appears', async () => {
    const history = fx('history_full.json') as Record<string, unknown>;
    let calls = 0;
    routes.set('GET /api/history/*', (q, res) => {
      const id = q.path.split('/').pop() ?? '';
      calls++;
      json(res, 200, calls < 3 ? {} : { [id]: history[id] });
    });
    const c = client();
    const ok = await c.waitForCompletion('bfd8ecf8-c0f4-4f77-92de-01f4edffe7ce', { pollIntervalMs: 20 });
    expect(ok).toMatchObject({ status: 'success', source: 'history' });
    expect(ok.status === 'success' && ok.outputs.map((o) => o.filename).sort()).toEqual([
      'ComfyUI_temp_qjgao_00001_.png',
      'ci_00001_.png',
    ]);
    calls = 10;
    const failed = await c.waitForCompletion('4e5f8a7c-f6f8-4c70-b3ed-49383cf25be7', { pollIntervalMs: 20 });
    expect(jobErrorFromOutcome(failed)).toMatchObject({
      reason: 'execution_error',
      nodeId: '1',
      nodeType: 'LoadImage',
      exceptionType: 'PIL.UnidentifiedImageError',
      message: "cannot identify image file '/srv/comfyui/input/fixture_corrupt.png'",
    });
    const interrupted = await c.waitForCompletion('4642758b-7eb2-4291-8843-a11fa4416d94', {
      pollIntervalMs: 20,
    });
    expect(jobErrorFromOutcome(interrupted)).toMatchObject({
      reason: 'interrupted',
      nodeId: '3',
      details: { executed: ['1', '2'] },
    });
  });

  it('keeps polling through errors and stops on abort', async () => {
    let calls = 0;
    routes.set('GET /api/history/*', (_q, res) => {
      calls++;
      if (calls === 1) return res.writeHead(502).end();
      json(res, 200, {});
    });
    const ac = new AbortController();
    const wait = client().waitForCompletion('p', { pollIntervalMs: 20, signal: ac.signal });
    const end = Date.now() + 2000;
    while (calls < 3 && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
    ac.abort(new Error('job cancelled'));
    await expect(wait).rejects.toThrow('job cancelled');
  });
});
