/**
 * The stand-in serving a web frontend and custom nodes' web folders (`frontendRoot`,
 * `extensionDirs`), like ComfyUI's static routes; and nothing of the kind without them.
 */
import { readFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStandin, type Standin } from './server.js';
import { spawnStandinCli } from './test-helpers.js';

const FIXTURES = fileURLToPath(new URL('../../fixtures/', import.meta.url));
const MINI = join(FIXTURES, 'mini-frontend');
const EXTENSION = join(FIXTURES, 'mini-extension');

/** A GET with the path sent exactly as given (fetch would normalise `..` away). */
function rawGet(base: string, path: string): Promise<{ status: number; body: Buffer }> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const req = request({ host: u.hostname, port: u.port, path, method: 'GET' }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('comfyui stand-in: without a frontend', () => {
  it('answers / with its one-line page, lists no extensions and serves no files', async () => {
    const s = await startStandin();
    try {
      const root = await fetch(`${s.url}/`);
      expect(root.headers.get('content-type')).toBe('text/html');
      expect(await root.text()).toBe('<!doctype html><title>ComfyUI stand-in</title>\n');
      expect(await (await fetch(`${s.url}/extensions`)).json()).toEqual([]);
      expect((await fetch(`${s.url}/index.html`)).status).toBe(404);
      expect(s.requests.map((r) => `${r.method} ${r.path}`)).toEqual([
        'GET /',
        'GET /extensions',
        'GET /index.html',
      ]);
    } finally {
      await s.close();
    }
  });
});

describe('comfyui stand-in: serving a frontend', () => {
  let s: Standin;
  beforeAll(async () => {
    s = await startStandin({ frontendRoot: MINI, extensionDirs: { hello: EXTENSION } });
  });
  afterAll(() => s.close());

  it("serves index.html at / and the web root's files, with their types", async () => {
    const root = await fetch(`${s.url}/`);
    expect(root.status).toBe(200);
    expect(root.headers.get('cache-control')).toBe('no-cache');
    expect(Buffer.from(await root.arrayBuffer())).toEqual(readFileSync(join(MINI, 'index.html')));
    const js = await fetch(`${s.url}/assets/index-D4f9Lm2Q.js`);
    expect(js.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expect(await js.text()).toBe(readFileSync(join(MINI, 'assets/index-D4f9Lm2Q.js'), 'utf8'));
    const font = await fetch(`${s.url}/assets/font-Hk3Jd9Sa.woff2`);
    expect(font.headers.get('content-type')).toBe('font/woff2');
    expect(Buffer.from(await font.arrayBuffer())).toEqual(
      readFileSync(join(MINI, 'assets/font-Hk3Jd9Sa.woff2')),
    );
    const head = await fetch(`${s.url}/scripts/app.js`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(Number(head.headers.get('content-length'))).toBe(
      readFileSync(join(MINI, 'scripts/app.js')).length,
    );
  });

  it("lists and serves the custom nodes' files under /extensions/<name>/", async () => {
    expect(await (await fetch(`${s.url}/extensions`)).json()).toEqual(['/extensions/hello/js/hello.js']);
    expect(await (await fetch(`${s.url}/api/extensions`)).json()).toEqual(['/extensions/hello/js/hello.js']);
    const ext = await fetch(`${s.url}/extensions/hello/js/hello.js`);
    expect(await ext.text()).toBe(readFileSync(join(EXTENSION, 'js/hello.js'), 'utf8'));
  });

  it('keeps API routes first, and serves nothing outside the folders', async () => {
    const stats = (await (await fetch(`${s.url}/system_stats`)).json()) as {
      system: { comfyui_version: string };
    };
    expect(stats.system.comfyui_version).toBe('0.3.64');
    expect((await fetch(`${s.url}/assets/missing.js`)).status).toBe(404);
    expect((await fetch(`${s.url}/assets`)).status).toBe(403); // a folder, like aiohttp
    for (const path of [
      '/../package.json',
      '/assets/../../package.json',
      '/%2e%2e/package.json',
      '/..%2Fpackage.json',
      '/extensions/hello/../../../package.json',
      '/extensions/nope/js/hello.js',
    ]) {
      expect((await rawGet(s.url, path)).status, path).toBe(404);
    }
  });

  it('takes --frontend-root and --extension-dir on the command line', async () => {
    const {
      child,
      url: listening,
      exited,
    } = spawnStandinCli(['--port', '0', '--frontend-root', MINI, '--extension-dir', `hello=${EXTENSION}`]);
    try {
      const url = await listening;
      expect(await (await fetch(`${url}/`)).text()).toBe(readFileSync(join(MINI, 'index.html'), 'utf8'));
      expect(await (await fetch(`${url}/extensions`)).json()).toEqual(['/extensions/hello/js/hello.js']);
    } finally {
      child.kill('SIGTERM');
      await exited;
    }
  });
});
