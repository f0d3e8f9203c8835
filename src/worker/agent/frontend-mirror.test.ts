/**
 * The frontend mirror flow (offer → PUT the missing contents → complete) against a small real HTTP
 * server written here, reading the frontend from the ComfyUI stand-in or from a folder.
 */
import { createHash } from 'node:crypto';
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startStandin, type Standin } from '../../../test/support/comfyui-standin/server.js';
import { frontendOfferSchema, type FrontendOffer } from '../protocol.js';
import {
  FrontendChangedError,
  FrontendMirror,
  offerFrontend,
  readFrontend,
  type MirrorContext,
} from './frontend-mirror.js';

const FIXTURES = fileURLToPath(new URL('../../../test/fixtures/', import.meta.url));
const MINI = join(FIXTURES, 'mini-frontend');
const EXTENSION = join(FIXTURES, 'mini-extension');
const TOKEN = 'mirror-test-secret-token';

interface Put {
  sha: string;
  contentLength: string | undefined;
  body: Buffer;
}

/** The three endpoints, minimally, recording what they got; `script` forces answers. */
interface MirrorServer {
  url: string;
  offers: FrontendOffer[];
  puts: Put[];
  completes: string[];
  blobs: Map<string, Buffer>;
  script: {
    /** Statuses to answer the next offers with, before answering normally. */
    offer: number[];
    put: number[];
    complete: number[];
    /** Answer the next PUTs 200 without keeping the content (so complete finds it missing). */
    losePuts: number;
  };
  close(): Promise<void>;
}

async function startMirrorServer(): Promise<MirrorServer> {
  const pending = new Map<string, Set<string>>();
  const m: Omit<MirrorServer, 'url' | 'close'> = {
    offers: [],
    puts: [],
    completes: [],
    blobs: new Map(),
    script: { offer: [], put: [], complete: [], losePuts: 0 },
  };
  const json = (res: ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };
  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks);
    if (req.headers.authorization !== `Bearer ${TOKEN}`)
      return json(res, 401, { error: { code: 'INVALID_TOKEN' } });
    const path = req.url ?? '/';
    if (req.method === 'POST' && path === '/worker/v1/frontend/offers') {
      const forced = m.script.offer.shift();
      if (forced === 409) return json(res, 409, { error: { code: 'FRONTEND_NOT_WANTED', message: 'no' } });
      if (forced) return json(res, forced, { error: { code: 'STORE_UNAVAILABLE' } });
      const offer = frontendOfferSchema.parse(JSON.parse(body.toString()));
      m.offers.push(offer);
      const versionId = createHash('sha256')
        .update(offer.files.map((f) => `${f.path}:${f.sha256}`).join('\n'))
        .digest('hex')
        .slice(0, 16);
      const shas = new Set(offer.files.map((f) => f.sha256));
      const missing = [...shas].filter((s) => !m.blobs.has(s));
      if (missing.length === 0) return json(res, 200, { versionId, status: 'present', missing: [] });
      pending.set(versionId, shas);
      return json(res, 200, { versionId, status: 'pending', missing });
    }
    const put = /^\/worker\/v1\/frontend\/blobs\/([0-9a-f]{64})$/.exec(path);
    if (req.method === 'PUT' && put) {
      const sha = put[1]!;
      const forced = m.script.put.shift();
      if (forced) return json(res, forced, { error: { code: 'X' } });
      m.puts.push({ sha, contentLength: req.headers['content-length'], body });
      if (createHash('sha256').update(body).digest('hex') !== sha)
        return json(res, 400, { error: { code: 'HASH_MISMATCH' } });
      if (m.script.losePuts > 0) m.script.losePuts--;
      else m.blobs.set(sha, body);
      return json(res, 200, { sha256: sha, size: body.length });
    }
    const complete = /^\/worker\/v1\/frontend\/offers\/([0-9a-f]{16})\/complete$/.exec(path);
    if (req.method === 'POST' && complete) {
      const id = complete[1]!;
      m.completes.push(id);
      const forced = m.script.complete.shift();
      if (forced) return json(res, forced, { error: { code: 'X' } });
      const shas = pending.get(id);
      if (!shas) return json(res, 404, { error: { code: 'NOT_FOUND' } });
      const missing = [...shas].filter((s) => !m.blobs.has(s));
      if (missing.length > 0)
        return json(res, 409, { error: { code: 'FRONTEND_INCOMPLETE', message: 'x', details: { missing } } });
      return json(res, 200, { versionId: id, status: 'present', missing: [] });
    }
    json(res, 404, { error: { code: 'NOT_FOUND' } });
  };
  const server: Server = createServer((req, res) => void handle(req, res));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    ...m,
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

/** Log lines, to check what is said (and that the token never is). */
const logLines: string[] = [];
const logger = pino(
  { level: 'debug' },
  new Writable({
    write(chunk: Buffer, _enc, cb) {
      logLines.push(chunk.toString());
      cb();
    },
  }),
);

let standin: Standin;
let server: MirrorServer;
const tmp: string[] = [];

beforeAll(async () => {
  standin = await startStandin({ frontendRoot: MINI, extensionDirs: { hello: EXTENSION } });
});
afterAll(async () => {
  await standin.close();
  for (const d of tmp) rmSync(d, { recursive: true, force: true });
});
afterEach(async () => {
  await server?.close();
  standin.clearRequests();
  expect(logLines.join('')).not.toContain(TOKEN);
  logLines.length = 0;
});

function ctx(over: Partial<MirrorContext> = {}): MirrorContext {
  return {
    cp: { serverUrl: server.url, token: TOKEN },
    comfyuiUrl: standin.url,
    comfyuiVersion: '0.3.64',
    logger,
    retryBackoff: { baseMs: 10, maxMs: 50 },
    ...over,
  };
}

const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

describe('offering the frontend', () => {
  it('offers every file, uploads only what the control plane lacks, then completes', async () => {
    server = await startMirrorServer();
    const snap = await readFrontend(ctx());
    // The control plane already holds index.html and the favicon from an earlier version.
    const held = snap.files.filter((f) => f.path === 'index.html' || f.path === 'assets/favicon.ico');
    for (const f of held) server.blobs.set(f.sha256, Buffer.from('held'));

    const result = await offerFrontend(ctx(), snap);
    expect(server.offers).toHaveLength(1);
    const offer = server.offers[0]!;
    expect(offer).toMatchObject({ source: 'http', comfyuiVersion: '0.3.64', frontendVersion: '0.0.1-mini' });
    expect(offer.files).toEqual(snap.files);
    expect(offer.files.map((f) => f.path)).toContain('extensions/hello/js/hello.js');

    const expectedShas = new Set(snap.files.map((f) => f.sha256));
    for (const f of held) expectedShas.delete(f.sha256);
    expect(new Set(server.puts.map((p) => p.sha))).toEqual(expectedShas);
    expect(server.puts).toHaveLength(expectedShas.size);
    for (const p of server.puts) {
      expect(sha(p.body)).toBe(p.sha);
      expect(p.contentLength).toBe(String(p.body.length));
    }
    expect(server.completes).toHaveLength(1);
    const bytes = server.puts.reduce((n, p) => n + p.body.length, 0);
    expect(result).toEqual({
      status: 'sent',
      versionId: server.completes[0],
      files: snap.files.length,
      blobsSent: expectedShas.size,
      bytesSent: bytes,
      frontendVersion: '0.0.1-mini',
    });

    // Offered again: present, nothing sent.
    const again = await offerFrontend(ctx(), snap);
    expect(again).toMatchObject({ status: 'present', blobsSent: 0, bytesSent: 0 });
    expect(server.puts).toHaveLength(expectedShas.size);
  });

  it('stops quietly when the control plane does not want a mirror (409)', async () => {
    server = await startMirrorServer();
    server.script.offer.push(409);
    const result = await offerFrontend(ctx(), await readFrontend(ctx()));
    expect(result).toEqual({ status: 'not_wanted' });
    expect(server.puts).toHaveLength(0);
    expect(server.completes).toHaveLength(0);
  });

  it('retries transient failures: a 503 to the offer, a PUT and the completion', async () => {
    server = await startMirrorServer();
    server.script.offer.push(503);
    server.script.put.push(503);
    server.script.complete.push(502);
    const snap = await readFrontend(ctx());
    const result = await offerFrontend(ctx(), snap);
    expect(result.status).toBe('sent');
    expect(server.offers).toHaveLength(1); // the 503 was not recorded as an offer
    expect(server.completes).toHaveLength(2);
    expect(server.blobs.size).toBe(new Set(snap.files.map((f) => f.sha256)).size);
    // Without retries the 503 is the answer.
    server.script.offer.push(503);
    await expect(offerFrontend(ctx({ attempts: 1 }), snap)).rejects.toThrow(/HTTP 503/);
  });

  it('sends again what did not arrive when completing finds contents missing', async () => {
    server = await startMirrorServer();
    server.script.losePuts = 2;
    const snap = await readFrontend(ctx());
    const result = await offerFrontend(ctx(), snap);
    expect(result.status).toBe('sent');
    const distinct = new Set(snap.files.map((f) => f.sha256)).size;
    expect(server.puts).toHaveLength(distinct + 2);
    expect(server.completes).toHaveLength(2);
  });

  it('reports a content that changed since it was read', async () => {
    server = await startMirrorServer();
    const snap = await readFrontend(ctx());
    const entry = snap.files.find((f) => f.path === 'assets/index-D4f9Lm2Q.js')!;
    // Pretend the file was read with other contents: the control plane refuses the upload (400).
    snap.blobs.set('0'.repeat(64), snap.blobs.get(entry.sha256)!);
    snap.files = snap.files.map((f) => (f === entry ? { ...f, sha256: '0'.repeat(64) } : f));
    await expect(offerFrontend(ctx(), snap)).rejects.toThrow(FrontendChangedError);
  });

  it('reads a frontend folder, and the custom nodes from ComfyUI', async () => {
    server = await startMirrorServer();
    // Its own ComfyUI, so the requests it sees are this test's alone.
    const own = await startStandin({ frontendRoot: MINI, extensionDirs: { hello: EXTENSION } });
    try {
      const c = ctx({ frontendDir: MINI, comfyuiUrl: own.url });
      const snap = await readFrontend(c);
      expect(snap.source).toBe('dir');
      const paths = snap.files.map((f) => f.path);
      expect(paths).toContain('assets/index-D4f9Lm2Q.js.map'); // a folder can be listed
      expect(paths).toContain('extensions/hello/js/hello.js'); // only ComfyUI serves this one
      // Nothing of the folder was fetched from ComfyUI.
      expect(own.requests.map((r) => r.path)).toEqual(['/extensions', '/extensions/hello/js/hello.js']);
      const result = await offerFrontend(c, snap);
      expect(result.status).toBe('sent');
      expect(server.offers[0]!.source).toBe('dir');
      for (const f of snap.files) expect(sha(server.blobs.get(f.sha256)!)).toBe(f.sha256);
    } finally {
      await own.close();
    }
  });
});

describe('FrontendMirror (the background task)', () => {
  function mirror(over: { frontendDir?: string; comfyuiUrl?: string } = {}) {
    return new FrontendMirror({
      cp: { serverUrl: server.url, token: TOKEN },
      comfyuiUrl: over.comfyuiUrl ?? standin.url,
      logger,
      comfyuiVersion: () => '0.3.64',
      retryBackoff: { baseMs: 10, maxMs: 50 },
      failureBackoff: { baseMs: 50, maxMs: 100 },
      ...(over.frontendDir ? { frontendDir: over.frontendDir } : {}),
    });
  }

  it('mirrors once wanted and ComfyUI is healthy; later asks re-offer without crawling again', async () => {
    server = await startMirrorServer();
    const own = await startStandin({ frontendRoot: MINI, extensionDirs: { hello: EXTENSION } });
    const m = mirror({ comfyuiUrl: own.url });
    m.setWanted(true);
    await m.idle();
    expect(m.status().state).toBe('idle'); // ComfyUI not known healthy yet
    expect(server.offers).toHaveLength(0);
    m.setComfyHealthy(true);
    await m.idle();
    expect(m.status()).toMatchObject({
      state: 'done',
      versionId: server.completes[0],
      frontendVersion: '0.0.1-mini',
      files: 12,
      lastError: null,
    });
    const outcome = logLines
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((l) => l.level === 30);
    expect(outcome).toHaveLength(1);
    expect(outcome[0]).toMatchObject({
      msg: 'mirrored the ComfyUI frontend to the control plane',
      versionId: server.completes[0],
      files: 12,
      source: 'http',
    });
    expect(outcome[0]!.ms).toEqual(expect.any(Number));
    expect(outcome[0]!.bytesSent).toBeGreaterThan(0);

    // A new connection asks again: two cheap requests to ComfyUI and the same offer.
    own.clearRequests();
    m.setWanted(true);
    await m.idle();
    expect(own.requests.map((r) => r.path)).toEqual(['/', '/extensions']);
    expect(server.offers).toHaveLength(2);
    expect(m.status().state).toBe('done');
    await m.stop();
    await own.close();
  });

  it('reads the frontend again when ComfyUI serves another one', async () => {
    server = await startMirrorServer();
    const root = mkdtempSync(join(tmpdir(), 'cm-mirror-'));
    tmp.push(root);
    cpSync(MINI, root, { recursive: true });
    const other = await startStandin({ frontendRoot: root });
    try {
      const m = mirror({ comfyuiUrl: other.url });
      m.setComfyHealthy(true);
      m.setWanted(true);
      await m.idle();
      const first = m.status().versionId;
      expect(first).toMatch(/^[0-9a-f]{16}$/);
      writeFileSync(
        join(root, 'index.html'),
        '<!doctype html><script type="module" src="./assets/Lazy-Qw8Er7Ty.js"></script>',
      );
      m.setWanted(true);
      await m.idle();
      expect(m.status().state).toBe('done');
      expect(m.status().versionId).not.toBe(first);
      expect(server.offers.at(-1)!.files.map((f) => f.path)).toEqual([
        'assets/Lazy-Qw8Er7Ty.js',
        'index.html',
      ]);
      await m.stop();
    } finally {
      await other.close();
    }
  });

  it('stops on 409 (not_wanted) and tries again only when asked again', async () => {
    server = await startMirrorServer();
    server.script.offer.push(409);
    const m = mirror();
    m.setComfyHealthy(true);
    m.setWanted(true);
    await m.idle();
    expect(m.status().state).toBe('not_wanted');
    await new Promise((r) => setTimeout(r, 150));
    expect(server.offers).toHaveLength(0);
    m.setWanted(true);
    await m.idle();
    expect(m.status().state).toBe('done');
    await m.stop();
  });

  it('retries with backoff after a failure, and never runs while unwanted', async () => {
    server = await startMirrorServer();
    server.script.offer.push(500, 500, 500, 500, 500); // more than one run's retries
    const m = mirror();
    m.setComfyHealthy(true);
    m.setWanted(true);
    await m.idle();
    expect(m.status()).toMatchObject({ state: 'failed', lastError: expect.stringMatching(/HTTP 500/) });
    const deadline = Date.now() + 5000;
    while (m.status().state !== 'done' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(m.status().state).toBe('done');

    const n = server.offers.length;
    m.setWanted(false);
    m.setComfyHealthy(false);
    m.setComfyHealthy(true);
    await m.idle();
    expect(server.offers).toHaveLength(n);
    await m.stop();
  });
});
