/**
 * ModelDownloadService on its own: what it sends to workers, what it keeps, and how it catches up
 * when a worker comes back (the end-to-end paths are in src/api/models.e2e.test.ts).
 */
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { ModelDownloadService } from './model-downloads.js';
import { WorkerRegistry } from './worker-registry.js';
import { FakeLink } from '../../test/support/fake-link.js';

const blobs = new Map<string, string>();
const store = {
  getBlob: async (ns: string, key: string) => blobs.get(`${ns}/${key}`) ?? null,
  putBlob: async (ns: string, key: string, v: string) => void blobs.set(`${ns}/${key}`, v),
  deleteBlob: async () => false,
  listBlobs: async () => [],
};

function hello(name: string, extra: Record<string, unknown> = {}) {
  return {
    type: 'hello' as const,
    protocol: 1 as const,
    name,
    agentVersion: 't',
    comfyuiVersion: 't',
    devices: [],
    envHash: 'a'.repeat(64),
    prefetch: 0,
    inFlight: [],
    warmModels: [],
    healthy: true,
    modelDownloads: true,
    ...extra,
  };
}

async function setup() {
  const workers = new WorkerRegistry({ retentionMs: 60_000 });
  let ready = 0;
  const svc = new ModelDownloadService(workers, pino({ level: 'silent' }), {
    store,
    onWorkerReady: () => ready++,
  });
  const connect = async (name: string, link: FakeLink, extra: Record<string, unknown> = {}) => {
    const msg = hello(name, extra);
    const { entry } = workers.connect(`gpu:${name}`, { ...msg, tokenName: 'gpu' }, link);
    entry.registered = true;
    await svc.hello(entry, msg);
    return entry;
  };
  return { workers, svc, connect, ready: () => ready };
}

describe('ModelDownloadService', () => {
  it('sends the token to the worker only, and forgets it once the download ended', async () => {
    const { svc, connect } = await setup();
    const link = new FakeLink();
    const w = await connect('a', link);
    const [d] = svc.start(
      {
        url: 'https://h.example/x.safetensors?sig=s',
        folder: 'vae',
        filename: 'x.safetensors',
        token: 'hf_t',
        workers: 'all',
      },
      'teacher',
    );
    expect(link.sent).toEqual([
      {
        type: 'model_download',
        downloadId: d!.id,
        url: 'https://h.example/x.safetensors?sig=s',
        folder: 'vae',
        filename: 'x.safetensors',
        token: 'hf_t',
      },
    ]);
    expect(JSON.stringify(svc.list())).not.toContain('hf_t');
    expect(JSON.stringify(svc.list())).not.toContain('sig=s');
    svc.progress(w, {
      type: 'model_download_progress',
      downloadId: d!.id,
      state: 'done',
      received: 5,
      total: 5,
    });
    expect(svc.get(d!.id)?.state).toBe('done');
    // After the end nothing is re-sent (there is nothing left to send it with).
    await connect('a', link, { downloads: [] });
    expect(link.sent).toHaveLength(1);
  });

  it('cancels at once for an offline worker; refuses to cancel a finished download', async () => {
    const { svc, connect, workers } = await setup();
    const link = new FakeLink();
    await connect('a', link);
    const [d] = svc.start(
      {
        url: 'https://h.example/x.safetensors',
        folder: 'vae',
        filename: 'x.safetensors',
        workers: ['gpu:a'],
      },
      't',
    );
    workers.disconnect('gpu:a', link);
    link.open = false;
    expect(svc.cancel(d!.id)).toMatchObject({ state: 'cancelled', cancelRequested: true });
    expect(() => svc.cancel(d!.id)).toThrow(/already ended/);
    expect(() => svc.cancel('nope')).toThrow(/No model download/);
  });

  it('refuses when no connected worker takes downloads, or the named one does not', async () => {
    const { svc, connect } = await setup();
    const input = {
      url: 'https://h.example/x.safetensors',
      folder: 'vae' as const,
      filename: 'x.safetensors',
    };
    expect(() => svc.start({ ...input, workers: 'all' }, 't')).toThrow(
      /No connected worker takes model downloads/,
    );
    await connect('plain', new FakeLink(), { modelDownloads: undefined });
    expect(() => svc.start({ ...input, workers: ['gpu:plain'] }, 't')).toThrow(/without --models-dir/);
    expect(() => svc.start({ ...input, workers: ['gpu:ghost'] }, 't')).toThrow(/No worker with id gpu:ghost/);
  });

  it('a worker back from a restart gets its unfinished downloads again; one that knows them reports their state', async () => {
    const { svc, connect } = await setup();
    const first = new FakeLink();
    await connect('a', first);
    const [d1] = svc.start(
      { url: 'https://h.example/1.safetensors', folder: 'vae', filename: '1.safetensors', workers: 'all' },
      't',
    );
    const [d2] = svc.start(
      { url: 'https://h.example/2.safetensors', folder: 'vae', filename: '2.safetensors', workers: 'all' },
      't',
    );
    const again = new FakeLink();
    await connect('a', again, {
      downloads: [{ downloadId: d2!.id, state: 'downloading', received: 10, total: 100 }],
    });
    expect(again.sent.map((m) => m.type === 'model_download' && m.downloadId)).toEqual([d1!.id]);
    expect(svc.get(d2!.id)).toMatchObject({ state: 'downloading', received: 10, total: 100 });
  });

  it('a worker lacking workshop models takes no job until their downloads ended', async () => {
    const { svc, connect, ready } = await setup();
    blobs.set(
      'models/workshop',
      JSON.stringify({
        models: [{ url: 'https://h.example/w.safetensors', folder: 'loras', filename: 'w.safetensors' }],
      }),
    );
    try {
      const link = new FakeLink();
      const w = await connect('new', link);
      expect(w.preparing).toBe(true);
      const sent = link.sent[0];
      expect(sent).toMatchObject({ type: 'model_download', folder: 'loras', filename: 'w.safetensors' });
      const id = sent!.type === 'model_download' ? sent!.downloadId : '';
      expect(svc.get(id)?.by).toBe('workshop');
      svc.progress(w, {
        type: 'model_download_progress',
        downloadId: id,
        state: 'failed',
        received: 0,
        total: null,
        error: { code: 'http_404', message: 'x' },
      });
      expect(w.preparing).toBe(false);
      expect(ready()).toBe(1);
      // A worker without --models-dir is never held back.
      const plain = await connect('plain', new FakeLink(), { modelDownloads: undefined });
      expect(plain.preparing).toBe(false);
    } finally {
      blobs.clear();
    }
  });
});
