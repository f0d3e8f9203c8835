import { mkdtemp, readdir, readFile, rm, stat, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startModelServer, type ModelServer } from '../../../test/support/model-server.js';
import { downloadModel, KEEP_PARTIAL, ModelDownloadError, type DownloadOptions } from './model-download.js';

let server: ModelServer;
let dir: string;

beforeAll(async () => {
  server = await startModelServer({ slowChunk: 8192, slowPauseMs: 30 });
});
afterAll(async () => server.close());
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cm-models-'));
  server.requests.length = 0;
});
afterEach(async () => rm(dir, { recursive: true, force: true }));

function opts(path: string, extra: Partial<DownloadOptions> = {}): DownloadOptions {
  return {
    url: `${server.url}${path}`,
    dest: join(dir, 'checkpoints', 'model.safetensors'),
    part: join(dir, '.comfy-multi-downloads', 'x.part'),
    signal: new AbortController().signal,
    onProgress: () => {},
    retryDelayMs: 10,
    ...extra,
  };
}

async function failure(p: Promise<unknown>): Promise<ModelDownloadError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(ModelDownloadError);
    return err as ModelDownloadError;
  }
  throw new Error('expected the download to fail');
}

/** Files ComfyUI would see in checkpoints/ (nothing partial may ever be there). */
const visible = async () => readdir(join(dir, 'checkpoints')).catch(() => [] as string[]);

describe('downloadModel', () => {
  it('downloads, checks the sha256 and renames into place; the token goes along as Bearer', async () => {
    const f = server.add('/org/repo/resolve/main/a.safetensors', 300_000);
    const seen: string[] = [];
    const r = await downloadModel(
      opts('/org/repo/resolve/main/a.safetensors', {
        sha256: f.sha256,
        token: 'hf_secret',
        onProgress: (p) => seen.push(p.phase),
      }),
    );
    expect(r).toEqual({ size: 300_000, sha256: f.sha256, existing: false });
    expect((await readFile(join(dir, 'checkpoints', 'model.safetensors'))).equals(f.bytes)).toBe(true);
    expect(server.requests[0]!.authorization).toBe('Bearer hf_secret');
    expect(seen).toContain('downloading');
    expect(seen.at(-1)).toBe('verifying');
    expect(await readdir(join(dir, '.comfy-multi-downloads'))).toEqual([]);
  });

  it("sends the token to the URL's origin only, not to the CDN it redirects to", async () => {
    const cdn = await startModelServer();
    try {
      const f = cdn.add('/blob/xyz', 50_000);
      server.redirect('/org/gated/resolve/main/g.safetensors', `${cdn.url}/blob/xyz?signature=abc`);
      const r = await downloadModel(
        opts('/org/gated/resolve/main/g.safetensors', { sha256: f.sha256, token: 'hf_secret' }),
      );
      expect(r.sha256).toBe(f.sha256);
      expect(server.requests[0]!.authorization).toBe('Bearer hf_secret');
      expect(cdn.requests.map((q) => q.authorization)).toEqual([null]);
    } finally {
      await cdn.close();
    }
  });

  it('resumes with Range after the connection is cut half-way', async () => {
    const f = server.add('/cut.safetensors', 1_000_000, 'cut');
    const t0 = performance.now();
    const r = await downloadModel(
      opts('/cut.safetensors', {
        sha256: f.sha256,
        onProgress: (x) => console.log(Math.round(performance.now() - t0), x.phase, x.received),
      }),
    );
    expect(r.sha256).toBe(f.sha256);
    expect((await readFile(join(dir, 'checkpoints', 'model.safetensors'))).equals(f.bytes)).toBe(true);
    expect(server.requests).toHaveLength(2);
    expect(server.requests[0]!.range).toBeNull();
    const resumedAt = Number(/^bytes=(\d+)-$/.exec(server.requests[1]!.range ?? '')?.[1]);
    expect(resumedAt).toBeGreaterThan(0);
    expect(resumedAt).toBeLessThan(1_000_000);
  });

  it('keeps the partial file when it gives up, and a later run resumes it', async () => {
    const f = server.add('/cut2.safetensors', 800_000, 'cut');
    const e = await failure(downloadModel(opts('/cut2.safetensors', { maxRetries: 0 })));
    expect(e.code).toBe('interrupted');
    expect(await visible()).toEqual([]);
    const part = await stat(join(dir, '.comfy-multi-downloads', 'x.part'));
    expect(part.size).toBeGreaterThan(0);
    const r = await downloadModel(opts('/cut2.safetensors', { sha256: f.sha256 }));
    expect(r.sha256).toBe(f.sha256);
    expect(server.requests.at(-1)!.range).toBe(`bytes=${part.size}-`);
  });

  it('refuses a file whose sha256 differs: nothing lands, the partial is deleted', async () => {
    const f = server.add('/wrong.safetensors', 200_000, 'wrong');
    const e = await failure(downloadModel(opts('/wrong.safetensors', { sha256: f.sha256 })));
    expect(e.code).toBe('checksum_mismatch');
    expect(e.message).toContain(`not the expected ${f.sha256}`);
    expect(await visible()).toEqual([]);
    expect(await readdir(join(dir, '.comfy-multi-downloads'))).toEqual([]);
  });

  it('a 404 is one clear error, tried once', async () => {
    const e = await failure(downloadModel(opts('/nope/missing.safetensors?sig=secret')));
    expect(e.code).toBe('http_404');
    expect(e.message).toBe(`${server.url}/nope/missing.safetensors answered 404 Not Found: check the URL.`);
    expect(e.message).not.toContain('secret');
    expect(server.requests).toHaveLength(1);
  });

  it('checks free disk space before writing anything', async () => {
    server.add('/big.safetensors', 500_000);
    const e = await failure(downloadModel(opts('/big.safetensors', { freeBytes: async () => 100_000 })));
    expect(e.code).toBe('disk_full');
    expect(e.message).toContain('needs 500.0 KB more, the models disk has 100.0 KB free');
    expect(await visible()).toEqual([]);
    expect((await stat(join(dir, '.comfy-multi-downloads', 'x.part')).catch(() => null))?.size ?? 0).toBe(0);
  });

  it('cancels: the partial file is deleted and nothing lands', async () => {
    server.add('/slow.safetensors', 2_000_000, 'slow');
    const ac = new AbortController();
    const p = downloadModel(
      opts('/slow.safetensors', {
        signal: ac.signal,
        onProgress: (x) => {
          if (x.received > 50_000) ac.abort();
        },
      }),
    );
    const e = await failure(p);
    expect(e.code).toBe('cancelled');
    expect(await visible()).toEqual([]);
    expect(await readdir(join(dir, '.comfy-multi-downloads'))).toEqual([]);
  });

  it('an agent stopping keeps the partial file, and the next run resumes it', async () => {
    const f = server.add('/slow2.safetensors', 300_000, 'slow');
    const ac = new AbortController();
    const e = await failure(
      downloadModel(
        opts('/slow2.safetensors', {
          signal: ac.signal,
          onProgress: (x) => {
            if (x.received > 50_000) ac.abort(KEEP_PARTIAL);
          },
        }),
      ),
    );
    expect(e.code).toBe('stopped');
    const kept = (await stat(join(dir, '.comfy-multi-downloads', 'x.part'))).size;
    expect(kept).toBeGreaterThan(0);
    expect(await visible()).toEqual([]);
    const r = await downloadModel(opts('/slow2.safetensors', { sha256: f.sha256 }));
    expect(r.sha256).toBe(f.sha256);
    expect(server.requests.at(-1)!.range).toBe(`bytes=${kept}-`);
  });

  it('a file already in place is reported, not downloaded again', async () => {
    await mkdir(join(dir, 'checkpoints'), { recursive: true });
    await writeFile(join(dir, 'checkpoints', 'model.safetensors'), 'x');
    const r = await downloadModel(opts('/whatever.safetensors'));
    expect(r).toEqual({ size: 1, sha256: null, existing: true });
    expect(server.requests).toHaveLength(0);
  });
});
