/**
 * Reading a ComfyUI web frontend: crawled over HTTP from the ComfyUI stand-in serving
 * test/fixtures/mini-frontend (a small Vite-style build) and one custom node's web folder, and read
 * from a folder.
 */
import { createHash } from 'node:crypto';
import {
  cpSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
  appendFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startStandin, type Standin } from '../../../test/support/comfyui-standin/server.js';
import { crawlFrontend } from './frontend-crawl.js';
import { readFrontendDir } from './frontend-dir.js';
import { FrontendLimitError, isCrawlablePath } from './frontend-refs.js';

const FIXTURES = fileURLToPath(new URL('../../../test/fixtures/', import.meta.url));
const MINI = join(FIXTURES, 'mini-frontend');
const EXTENSION = join(FIXTURES, 'mini-extension');

/** Every file under `dir` as `{path, size, sha256}`, sorted. */
function manifestOf(dir: string, prefix = ''): { path: string; size: number; sha256: string }[] {
  const out: { path: string; size: number; sha256: string }[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const full = join(d, e.name);
      if (e.isDirectory()) walk(full);
      else {
        const body = readFileSync(full);
        out.push({
          path: prefix + relative(dir, full).split('\\').join('/'),
          size: body.length,
          sha256: createHash('sha256').update(body).digest('hex'),
        });
      }
    }
  };
  walk(dir);
  return out.sort((a, b) => (a.path < b.path ? -1 : 1));
}

const tmp: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'cm-frontend-'));
  tmp.push(d);
  return d;
}

afterAll(() => {
  for (const d of tmp) rmSync(d, { recursive: true, force: true });
});

describe('crawling the frontend ComfyUI serves', () => {
  let standin: Standin;
  beforeAll(async () => {
    standin = await startStandin({ frontendRoot: MINI, extensionDirs: { hello: EXTENSION } });
  });
  afterAll(() => standin.close());
  afterEach(() => standin.clearRequests());

  it('finds every file a browser loads, with its size and sha256, and the frontend version', async () => {
    const res = await crawlFrontend({ baseUrl: standin.url });
    const expected = [
      ...manifestOf(MINI).filter((f) => !f.path.endsWith('.map')), // nothing refers to the source map
      ...manifestOf(join(EXTENSION), 'extensions/hello/'),
    ].sort((a, b) => (a.path < b.path ? -1 : 1));
    expect(res.files).toEqual(expected);
    expect(res.files.map((f) => f.path)).toEqual(
      expect.arrayContaining([
        'index.html',
        'assets/index-D4f9Lm2Q.js', // <script src="./assets/…">
        'assets/index-Bx7kQ2aZ.css', // <link href="./assets/…">
        'assets/Chunk-Ab12Cd34.js', // __vite__mapDeps, relative to the document
        'assets/Chunk-Ab12Cd34.css',
        'assets/Lazy-Qw8Er7Ty.js', // import("./Lazy-…") relative to the entry
        'assets/logo-Zx9Yw8Vu.svg', // new URL("logo-…", import.meta.url)
        'assets/font-Hk3Jd9Sa.woff2', // url(./font-…) in the CSS
        'assets/grid-Pp2Oo3Ii.svg', // url('/assets/…'): root-absolute
        'assets/favicon.ico',
        'scripts/app.js', // the custom node's ../../../scripts/app.js
        'extensions/hello/js/hello.js', // listed by GET /extensions
      ]),
    );
    expect(res.indexSha256).toBe(expected.find((f) => f.path === 'index.html')!.sha256);
    expect(res.frontendVersion).toBe('0.0.1-mini');
    expect(res.extensions).toEqual(['/extensions/hello/js/hello.js']);
    expect(res.totalBytes).toBe(expected.reduce((n, f) => n + f.size, 0));
    expect(res.requests).toBe(standin.requests.length);
  });

  it('requests nothing but / , /extensions and frontend paths: no API route, nothing outside the site', async () => {
    const root = tempDir();
    cpSync(MINI, root, { recursive: true });
    appendFileSync(
      join(root, 'assets/index-D4f9Lm2Q.js'),
      `\nconst bad = ["../../../etc/passwd.txt", "/api/view.png", "userdata/w.json", "/internal/logs.json", "view/a.png", "https://example.org/x.js", "/docs/a.html"];\n`,
    );
    appendFileSync(join(root, 'assets/index-Bx7kQ2aZ.css'), `\n.x{background:url(../../../../etc/passwd)}\n`);
    const evil = await startStandin({ frontendRoot: root, extensionDirs: { hello: EXTENSION } });
    try {
      const res = await crawlFrontend({ baseUrl: evil.url });
      expect(res.files.map((f) => f.path)).not.toContain('etc/passwd.txt');
      const paths = evil.requests.map((r) => r.path);
      expect(paths.slice(0, 2)).toEqual(['/', '/extensions']);
      for (const p of paths.slice(2)) {
        expect(isCrawlablePath(decodeURIComponent(p.slice(1))), p).toBe(true);
        expect(p).not.toMatch(/^\/(api|internal|userdata|view|templates|docs|ws)\/|etc\/passwd|\.\./);
      }
      expect(evil.requests.every((r) => r.method === 'GET')).toBe(true);
    } finally {
      await evil.close();
    }
  });

  it('probes numbered files a template literal builds, until one is missing', async () => {
    const root = tempDir();
    cpSync(MINI, root, { recursive: true });
    mkdirSync(join(root, 'assets/frames'));
    for (const n of [0, 1, 2, 4]) writeFileSync(join(root, `assets/frames/frame_${n}.png`), `png ${n}`);
    appendFileSync(
      join(root, 'assets/Lazy-Qw8Er7Ty.js'),
      'export const frame = (n) => `./frames/frame_${n}.png`;\n',
    );
    const s = await startStandin({ frontendRoot: root });
    try {
      const res = await crawlFrontend({ baseUrl: s.url });
      const frames = res.files.map((f) => f.path).filter((p) => p.includes('frame_'));
      expect(frames).toEqual([
        'assets/frames/frame_0.png',
        'assets/frames/frame_1.png',
        'assets/frames/frame_2.png',
      ]);
      expect(s.requests.map((r) => r.path)).not.toContain('/assets/frames/frame_4.png');
    } finally {
      await s.close();
    }
  });

  it('enforces the limits with a clear error', async () => {
    await expect(crawlFrontend({ baseUrl: standin.url, limits: { maxFiles: 3 } })).rejects.toThrow(
      new FrontendLimitError('the frontend has more than 3 files'),
    );
    await expect(crawlFrontend({ baseUrl: standin.url, limits: { maxFileBytes: 1000 } })).rejects.toThrow(
      /assets\/index-D4f9Lm2Q\.js is larger than 1000 bytes/,
    );
    await expect(crawlFrontend({ baseUrl: standin.url, limits: { maxTotalBytes: 2000 } })).rejects.toThrow(
      /the frontend is larger than 2000 bytes/,
    );
  });

  it('stops when aborted, and fails clearly when ComfyUI is unreachable', async () => {
    const ac = new AbortController();
    ac.abort();
    await expect(crawlFrontend({ baseUrl: standin.url, signal: ac.signal })).rejects.toThrow();
    await standin.faults.setUnreachable('refuse');
    try {
      await expect(crawlFrontend({ baseUrl: standin.url, attempts: 1 })).rejects.toThrow(
        /reading the frontend from ComfyUI failed at \/index\.html/,
      );
    } finally {
      await standin.faults.setUnreachable(false);
    }
  });

  it('only crawls the custom nodes when the frontend comes from a folder', async () => {
    // Its own ComfyUI, so the requests it sees are this test's alone.
    const own = await startStandin({ frontendRoot: MINI, extensionDirs: { hello: EXTENSION } });
    try {
      const known = new Set(manifestOf(MINI).map((f) => f.path));
      const res = await crawlFrontend({ baseUrl: own.url, includeIndex: false, known });
      expect(res.files.map((f) => f.path)).toEqual(['extensions/hello/js/hello.js']);
      expect(res.indexSha256).toBeNull();
      expect(own.requests.map((r) => r.path)).toEqual(['/extensions', '/extensions/hello/js/hello.js']);
    } finally {
      await own.close();
    }
  });
});

describe('reading the frontend from a folder', () => {
  it('lists every file, the same as the crawl finds plus the unreferenced ones', async () => {
    const res = await readFrontendDir(MINI);
    const expected = manifestOf(MINI);
    expect(res.files.map(({ path, size, sha256 }) => ({ path, size, sha256 }))).toEqual(expected);
    expect(res.files.every((f) => f.file.startsWith(res.dir))).toBe(true);
    expect(res.indexSha256).toBe(expected.find((f) => f.path === 'index.html')!.sha256);
    expect(res.frontendVersion).toBe('0.0.1-mini');
    expect(res.totalBytes).toBe(expected.reduce((n, f) => n + f.size, 0));

    const standin = await startStandin({ frontendRoot: MINI });
    try {
      const crawled = await crawlFrontend({ baseUrl: standin.url });
      // Unreferenced without a custom node: the source map, and the shim only extensions import.
      const fromDir = res.files
        .filter((f) => f.path !== 'assets/index-D4f9Lm2Q.js.map' && f.path !== 'scripts/app.js')
        .map(({ path, size, sha256 }) => ({ path, size, sha256 }));
      expect(crawled.files).toEqual(fromDir);
    } finally {
      await standin.close();
    }
  });

  it('skips dot-files, links that leave the folder and link loops; keeps links inside it', async () => {
    const root = tempDir();
    const site = join(root, 'site');
    cpSync(MINI, site, { recursive: true });
    writeFileSync(join(site, '.DS_Store'), 'x');
    mkdirSync(join(site, '.git'));
    writeFileSync(join(site, '.git', 'config'), 'x');
    writeFileSync(join(site, 'assets', '.env'), 'SECRET=1');
    writeFileSync(join(root, 'secret.txt'), 'outside');
    symlinkSync(join(root, 'secret.txt'), join(site, 'assets', 'escape.txt'));
    symlinkSync(root, join(site, 'up'));
    symlinkSync('grid-Pp2Oo3Ii.svg', join(site, 'assets', 'grid.svg'));
    symlinkSync('..', join(site, 'assets', 'loop'));
    const res = await readFrontendDir(site);
    const paths = res.files.map((f) => f.path);
    expect(paths).toEqual([...manifestOf(MINI).map((f) => f.path), 'assets/grid.svg'].sort());
    expect(res.files.find((f) => f.path === 'assets/grid.svg')!.sha256).toBe(
      res.files.find((f) => f.path === 'assets/grid-Pp2Oo3Ii.svg')!.sha256,
    );
    expect(res.skipped).toEqual(
      expect.arrayContaining([
        { path: '.DS_Store', why: 'dot-file' },
        { path: '.git', why: 'dot-file' },
        { path: 'assets/.env', why: 'dot-file' },
        { path: 'assets/escape.txt', why: 'link leaves the folder' },
        { path: 'up', why: 'link leaves the folder' },
      ]),
    );
  });

  it('needs an index.html and respects the limits', async () => {
    const root = tempDir();
    cpSync(MINI, root, { recursive: true });
    rmSync(join(root, 'index.html'));
    await expect(readFrontendDir(root)).rejects.toThrow(/has no index\.html/);
    await expect(readFrontendDir(join(root, 'nope'))).rejects.toThrow(/cannot be read/);
    await expect(readFrontendDir(MINI, { limits: { maxFiles: 2 } })).rejects.toThrow(
      'the frontend has more than 2 files',
    );
    await expect(readFrontendDir(MINI, { limits: { maxFileBytes: 500 } })).rejects.toThrow(
      /larger than 500 bytes/,
    );
  });

  it('takes the version of the pip package the folder belongs to', async () => {
    const root = tempDir();
    const pkg = join(root, 'site-packages', 'comfyui_frontend_package');
    cpSync(MINI, join(pkg, 'static'), { recursive: true });
    mkdirSync(join(root, 'site-packages', 'comfyui_frontend_package-1.28.8.dist-info'));
    const res = await readFrontendDir(join(pkg, 'static'));
    expect(res.frontendVersion).toBe('1.28.8');
  });
});
