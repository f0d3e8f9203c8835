/**
 * The mirrored frontend on every process: two control-plane processes share one Redis (STORE=redis)
 * and one s3rver bucket (FILES=s3). A worker connected to A offers its frontend; B, which never saw
 * a worker, serves it byte-identical; a process started later copies it at start; an instructor's
 * choice of version on B is followed by A.
 */
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { startClusterKit, type ClusterKit, type ClusterProcess } from '../../test/support/cluster-kit.js';
import { offerOf, type Site } from '../../test/support/frontend-sites.js';
import { startS3Server, type S3ServerHandle } from '../../test/support/s3-server.js';

const redisUrl = inject('redisUrl');
const TOKEN = 'frontend-share-worker-token-0123456789';
const WORKER = { authorization: `Bearer ${TOKEN}` };
const sha = (s: string | Buffer) => createHash('sha256').update(s).digest('hex');

const V1: Site = {
  'index.html':
    '<!doctype html><title>ComfyUI</title><script type="module" src="./assets/index-A1.js"></script>',
  'assets/index-A1.js': `import("./Lazy-B2.js") // ${'x'.repeat(4000)}`,
  'assets/Lazy-B2.js': 'export const lazy = 1',
  'assets/logo.png': Buffer.from(Array.from({ length: 3000 }, (_, i) => (i * 7) & 255)),
};
const V2: Site = { ...V1, 'index.html': '<!doctype html><title>ComfyUI 2</title>' };

async function mirror(p: ClusterProcess, site: Site, version: string): Promise<string> {
  const res = await p.app.inject({
    method: 'POST',
    url: '/worker/v1/frontend/offers',
    headers: WORKER,
    payload: offerOf(site, version) as object,
  });
  const answer = res.json() as { versionId: string; status: string; missing: string[] };
  const bySha = new Map(Object.values(site).map((b) => [sha(b), b]));
  for (const m of answer.missing) {
    const put = await p.app.inject({
      method: 'PUT',
      url: `/worker/v1/frontend/blobs/${m}`,
      headers: { ...WORKER, 'content-type': 'application/octet-stream' },
      payload: bySha.get(m)!,
    });
    expect(put.statusCode).toBe(200);
  }
  if (answer.status === 'pending') {
    const done = await p.app.inject({
      method: 'POST',
      url: `/worker/v1/frontend/offers/${answer.versionId}/complete`,
      headers: WORKER,
      payload: {},
    });
    expect(done.statusCode).toBe(200);
  }
  return answer.versionId;
}

async function until(cond: () => Promise<boolean>): Promise<void> {
  const started = Date.now();
  while (!(await cond())) {
    if (Date.now() - started > 15_000) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('mirrored frontend shared by processes (Redis + S3)', () => {
  let s3: S3ServerHandle;
  let kit: ClusterKit;
  let alice: string;
  const saved = { ...process.env };

  beforeAll(async () => {
    s3 = await startS3Server({ buckets: ['files'] });
    // The S3 SDK reads its credentials from the environment.
    Object.assign(process.env, s3.env);
    kit = await startClusterKit({
      redisUrl,
      count: 2,
      env: { ...s3.env, FILES: 's3', S3_BUCKET: 'files', WORKER_TOKENS: `gpu1:${TOKEN}` },
    });
    await kit.processes[0]!.services.accounts.create('alice', 'participant', 'alice-password-0123456789');
    alice = kit.basic('alice', 'alice-password-0123456789');
  });
  afterAll(async () => {
    await kit?.close();
    await s3?.stop();
    process.env = saved;
  });

  const get = (p: ClusterProcess, url: string) => p.app.inject({ url, headers: { authorization: alice } });

  it('a version mirrored on A is served by B byte-identical, and by a process started later', async () => {
    const [a, b] = kit.processes as [ClusterProcess, ClusterProcess];
    expect((await get(b, '/alice/')).statusCode).toBe(503);
    await mirror(a, V1, '1.45.0');
    await until(async () => (await get(b, '/alice/')).statusCode === 200);
    for (const [path, body] of Object.entries(V1)) {
      const res = await get(b, `/alice/${path}`);
      expect(res.statusCode, path).toBe(200);
      expect(res.rawPayload.equals(Buffer.from(body)), path).toBe(true);
    }
    expect(b.services.frontend.status().version).toMatchObject({
      label: 'frontend 1.45.0',
      workerId: 'gpu1',
    });
    // Contents live in the bucket once, outside users' spaces.
    const keys = (await a.services.files.list('.frontend/')).map((f) => f.key);
    expect(keys.sort()).toEqual(
      [...new Set(Object.values(V1).map((v) => `.frontend/blobs/${sha(v)}`))].sort(),
    );

    const c = await kit.add();
    await c.services.frontendShare!.synced();
    expect((await get(c, '/alice/assets/logo.png')).rawPayload.equals(V1['assets/logo.png'] as Buffer)).toBe(
      true,
    );
  });

  it("a newer version from A's worker becomes current on B; an instructor's choice on B is followed by A", async () => {
    const [a, b] = kit.processes as [ClusterProcess, ClusterProcess];
    const v1 = a.services.frontendCache!.current()!.id;
    await mirror(a, V2, '1.46.0');
    await until(async () => (await get(b, '/alice/')).body === V2['index.html']);
    await b.services.frontendCache!.use(v1);
    await until(async () => (await get(a, '/alice/')).body === V1['index.html']);
  });
});
