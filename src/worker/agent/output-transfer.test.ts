/**
 * One output's trip from ComfyUI's `/view` to the control plane's PUT, over real HTTP servers: the
 * PUT goes out while ComfyUI is still looking the file up, and a ComfyUI failure stays one.
 */
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { ComfyClient } from '../../comfy/comfy-client.js';
import { ComfyHttpError } from '../../comfy/client-errors.js';
import { transferOutput } from './files.js';

const servers: http.Server[] = [];

async function serve(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<string> {
  const server = http.createServer(handler);
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

const job = { jobId: 'j1', attempt: 1, user: 'alice' };
const out = {
  nodeId: '9',
  filename: 'ComfyUI_00001_.png',
  subfolder: 'alice/j1',
  type: 'output' as const,
  kind: 'images',
};

/** A control plane that records when each PUT's headers and body arrived, and stores nothing. */
async function controlPlane() {
  const puts: { headersAt: number; body: Buffer | null; aborted: boolean }[] = [];
  const url = await serve((req, res) => {
    const put = { headersAt: performance.now(), body: null as Buffer | null, aborted: false };
    puts.push(put);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('error', () => (put.aborted = true));
    req.on('aborted', () => (put.aborted = true));
    req.on('end', () => {
      put.body = Buffer.concat(chunks);
      res.setHeader('content-type', 'application/json');
      res.end(
        JSON.stringify({
          nodeId: '9',
          filename: 'ComfyUI_00001_.png',
          subfolder: 'j1',
          type: 'output',
          kind: 'images',
          size: put.body.length,
          sha256: 'a'.repeat(64),
        }),
      );
    });
  });
  return { puts, cp: { serverUrl: url, token: 't' } };
}

describe('transferOutput', () => {
  it('sends the PUT while ComfyUI is still answering /view, then streams the bytes into it', async () => {
    const { puts, cp } = await controlPlane();
    let viewAnsweredAt = 0;
    const comfyUrl = await serve((_req, res) => {
      // ComfyUI busy: its answer comes late.
      setTimeout(() => {
        viewAnsweredAt = performance.now();
        res.setHeader('content-type', 'image/png');
        res.end(Buffer.from('png bytes'));
      }, 150);
    });
    const comfy = new ComfyClient({ baseUrl: comfyUrl, clientId: 'c', apiPrefix: '' });
    const stored = await transferOutput(comfy, cp, job, out);
    expect(stored).toMatchObject({ filename: 'ComfyUI_00001_.png', subfolder: 'j1', size: 9 });
    expect(puts).toHaveLength(1);
    expect(puts[0]!.body?.toString()).toBe('png bytes');
    // The control plane had the request well before ComfyUI answered.
    expect(puts[0]!.headersAt).toBeLessThan(viewAnsweredAt - 100);
  });

  it("reports ComfyUI's failure as ComfyUI's, and the control plane keeps no half upload", async () => {
    const { puts, cp } = await controlPlane();
    const comfyUrl = await serve((_req, res) => {
      setTimeout(() => {
        res.statusCode = 404;
        res.end('404: Not Found');
      }, 50);
    });
    const comfy = new ComfyClient({ baseUrl: comfyUrl, clientId: 'c', apiPrefix: '' });
    await expect(transferOutput(comfy, cp, job, out)).rejects.toBeInstanceOf(ComfyHttpError);
    // A PUT that went out ahead is cut off: nothing arrives complete, so nothing is stored.
    await expect.poll(() => puts.every((p) => p.aborted)).toBe(true);
    expect(puts.every((p) => p.body === null)).toBe(true);
  });

  describe("from ComfyUI's output folder (--output-dir)", () => {
    let dir: string;
    let views: string[];
    let comfy: ComfyClient;

    const withOutputDir = async () => {
      dir = await mkdtemp(join(tmpdir(), 'cm-outdir-'));
      views = [];
      const comfyUrl = await serve((req, res) => {
        views.push(req.url ?? '');
        res.setHeader('content-type', 'image/png');
        res.end(Buffer.from('from /view'));
      });
      comfy = new ComfyClient({ baseUrl: comfyUrl, clientId: 'c', apiPrefix: '' });
    };
    afterEach(async () => {
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    it('reads the file ComfyUI wrote there, without asking /view', async () => {
      await withOutputDir();
      const { puts, cp } = await controlPlane();
      await mkdir(join(dir, 'alice/j1'), { recursive: true });
      await writeFile(join(dir, 'alice/j1/ComfyUI_00001_.png'), 'bytes on disk');
      const stored = await transferOutput(comfy, cp, job, out, undefined, dir);
      expect(puts[0]!.body?.toString()).toBe('bytes on disk');
      expect(stored.size).toBe('bytes on disk'.length);
      expect(views).toEqual([]);
      // A video-sized file is streamed from the folder rather than read at once: same bytes.
      const big = Buffer.alloc(6 * 1024 * 1024, 3);
      await writeFile(join(dir, 'alice/j1/clip_00001_.mp4'), big);
      await transferOutput(
        comfy,
        cp,
        job,
        { ...out, filename: 'clip_00001_.mp4', kind: 'gifs' },
        undefined,
        dir,
      );
      expect(puts[1]!.body?.equals(big)).toBe(true);
      expect(views).toEqual([]);
    });

    it('asks /view for a file not there, a temp file, or a name that leaves the folder', async () => {
      await withOutputDir();
      const { puts, cp } = await controlPlane();
      // Outside the folder, where a `..` subfolder would lead: never read.
      await writeFile(join(dir, '..', 'cm-outdir-secret.png'), 'not yours').catch(() => undefined);
      await transferOutput(comfy, cp, job, out, undefined, dir);
      await transferOutput(comfy, cp, job, { ...out, type: 'temp' }, undefined, dir);
      await transferOutput(
        comfy,
        cp,
        job,
        { ...out, subfolder: '..', filename: 'cm-outdir-secret.png' },
        undefined,
        dir,
      );
      // A file name with a folder in it, as ComfyUI's own `/view` never reads one either.
      await mkdir(join(dir, 'alice/j1'), { recursive: true });
      await mkdir(join(dir, 'alice/j2'), { recursive: true });
      await writeFile(join(dir, 'alice/j2/x.png'), 'bob would not want this read');
      await transferOutput(comfy, cp, job, { ...out, filename: '../j2/x.png' }, undefined, dir);
      await rm(join(dir, '..', 'cm-outdir-secret.png'), { force: true });
      expect(puts.map((p) => p.body?.toString())).toEqual([
        'from /view',
        'from /view',
        'from /view',
        'from /view',
      ]);
      expect(views).toHaveLength(4);
    });

    it('asks /view when the name is a folder or a link out of the folder', async () => {
      await withOutputDir();
      const { puts, cp } = await controlPlane();
      await mkdir(join(dir, 'alice/j1/ComfyUI_00001_.png'), { recursive: true });
      const outside = await mkdtemp(join(tmpdir(), 'cm-outside-'));
      await writeFile(join(outside, 'x.png'), 'outside');
      await symlink(outside, join(dir, 'alice/link'));
      await transferOutput(comfy, cp, job, out, undefined, dir);
      await transferOutput(
        comfy,
        cp,
        job,
        { ...out, subfolder: 'alice/link', filename: 'x.png' },
        undefined,
        dir,
      );
      await rm(outside, { recursive: true, force: true });
      expect(puts.map((p) => p.body?.toString())).toEqual(['from /view', 'from /view']);
    });
  });
});
