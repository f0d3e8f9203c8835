/**
 * Worker file transfer: outputs streamed into the owner's space, path and size checks, and only the
 * worker holding the attempt may upload or download.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { HubTestBed, PROMPT, rawRequest, until } from '../../test/support/worker-hub-kit.js';

const bed = new HubTestBed();
const { start, agent } = bed;
afterEach(bed.reset);

describe('worker file transfer', () => {
  async function holding(prefetch = 0) {
    const token = await bed.cp.token('gpu');
    const { agent: a } = await agent(token, { prefetch });
    const job = await bed.cp.services.queue.enqueue({ user: 'alice', prompt: PROMPT });
    await a.next('assign');
    return { token, a, job };
  }

  it('streams an output into the owner space and answers its size and sha256', async () => {
    await start();
    const { token, a, job } = await holding();
    const body = Buffer.alloc(200_000, 7);
    const res = await rawRequest(
      bed.cp.url,
      'PUT',
      `/worker/v1/jobs/${job.id}/attempts/1/outputs/9/${job.id}/ComfyUI_00001_.png?kind=images`,
      {
        headers: { authorization: `Bearer ${token}`, 'content-type': 'image/png' },
        body,
      },
    );
    expect(res.status).toBe(200);
    const sha256 = createHash('sha256').update(body).digest('hex');
    expect(res.json()).toEqual({
      nodeId: '9',
      filename: 'ComfyUI_00001_.png',
      subfolder: job.id,
      type: 'output',
      kind: 'images',
      size: 200_000,
      sha256,
    });
    // Stored under the participant-facing name; the answer keeps the job's own name.
    const file = join(bed.cp.dir, 'files', 'alice', 'output', 'ComfyUI_00001_.png');
    expect(readFileSync(file).equals(body)).toBe(true);

    // temp previews go to the temp area; a JSON content type is just bytes here.
    const t = await rawRequest(
      bed.cp.url,
      'PUT',
      `/worker/v1/jobs/${job.id}/attempts/1/outputs/10/p.json?type=temp`,
      {
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: 'not json at all',
      },
    );
    expect(t.status).toBe(200);
    // Not a counted name: it keeps the job's own folder.
    expect(readFileSync(join(bed.cp.dir, 'files', 'alice', 'temp', job.id, 'p.json'), 'utf8')).toBe(
      'not json at all',
    );

    a.send({ type: 'job_completed', jobId: job.id, attempt: 1, outputs: [res.json() as never] });
    await until(async () => (await bed.cp.store.getJob(job.id))?.status === 'completed', 3000, 'completed');
    expect((await bed.cp.store.getJob(job.id))?.outputs[0]).toMatchObject({
      filename: 'ComfyUI_00001_.png',
      subfolder: '',
      sha256,
      size: 200_000,
    });
  });

  it('refuses paths that leave the user space, writing nothing', async () => {
    await start();
    const { token, job } = await holding();
    const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/octet-stream' };
    for (const path of [
      `/worker/v1/jobs/${job.id}/attempts/1/outputs/9/../../../../escape.png`,
      `/worker/v1/jobs/${job.id}/attempts/1/outputs/9/%2E%2E/%2E%2E/%2E%2E/escape.png`,
      `/worker/v1/jobs/${job.id}/attempts/1/outputs/9/sub%2F..%2F..%2F..%2Fescape.png`,
      `/worker/v1/jobs/${job.id}/attempts/1/outputs/9/a%5C..%5Cescape.png`,
      `/worker/v1/jobs/${job.id}/attempts/1/outputs/9/..`,
    ]) {
      const res = await rawRequest(bed.cp.url, 'PUT', path, { headers, body: 'x' });
      expect(res.status, path).toBe(400);
      expect((res.json() as { error: { code: string } }).error.code).toBe('INVALID_PATH');
    }
    const get = await rawRequest(
      bed.cp.url,
      'GET',
      `/worker/v1/jobs/${job.id}/inputs/..%2F..%2Fcomfy-multi.db`,
      { headers },
    );
    expect(get.status).toBe(400);
    const walk = (d: string): string[] =>
      readdirSync(d, { withFileTypes: true }).flatMap((e) =>
        e.isDirectory() ? walk(join(d, e.name)) : [join(d, e.name)],
      );
    expect(walk(bed.cp.dir).filter((f) => f.endsWith('escape.png'))).toEqual([]);
    expect(existsSync(join(bed.cp.dir, 'files'))).toBe(false);
  });

  it('lets only the worker holding the attempt upload and download', async () => {
    await start();
    const { token, job } = await holding();
    const otherToken = await bed.cp.token('other');
    const put = (t: string, attempt = 1) =>
      rawRequest(bed.cp.url, 'PUT', `/worker/v1/jobs/${job.id}/attempts/${attempt}/outputs/9/x.png`, {
        headers: { authorization: `Bearer ${t}` },
        body: 'png',
      });
    expect((await put(otherToken)).status).toBe(403);
    expect((await put(token, 2)).status).toBe(409);
    expect((await put('wrong-token-0000000000')).status).toBe(401);
    expect(
      (
        await rawRequest(bed.cp.url, 'PUT', `/worker/v1/jobs/${job.id}/attempts/1/outputs/9/x.png`, {
          body: 'png',
        })
      ).status,
    ).toBe(401);
    expect(
      (
        await rawRequest(bed.cp.url, 'PUT', `/worker/v1/jobs/nope/attempts/1/outputs/9/x.png`, {
          headers: { authorization: `Bearer ${token}` },
          body: 'x',
        })
      ).status,
    ).toBe(404);

    await bed.cp.services.files.write('alice/input/clips/in.png', Buffer.from('input bytes'));
    const get = (t: string, p = 'clips/in.png') =>
      rawRequest(bed.cp.url, 'GET', `/worker/v1/jobs/${job.id}/inputs/${p}`, {
        headers: { authorization: `Bearer ${t}` },
      });
    const ok = await get(token);
    expect(ok.status).toBe(200);
    expect(ok.body.toString()).toBe('input bytes');
    expect((await get(otherToken)).status).toBe(403);
    expect((await get(token, 'clips/missing.png')).status).toBe(404);

    await bed.cp.services.queue.cancel(job.id);
    expect((await put(token)).status).toBe(409);
    expect((await get(token)).status).toBe(409);
  });

  it('refuses an output over the size limit', async () => {
    await start({ OUTPUT_UPLOAD_LIMIT: '1kb' });
    const { token, job } = await holding();
    const path = `/worker/v1/jobs/${job.id}/attempts/1/outputs/9/big.png`;
    const declared = await rawRequest(bed.cp.url, 'PUT', path, {
      headers: { authorization: `Bearer ${token}` },
      body: Buffer.alloc(2048),
    });
    expect(declared.status).toBe(413);
    // Chunked, so the limit is only found while streaming.
    const u = new URL(bed.cp.url);
    const { request } = await import('node:http');
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(
        {
          host: u.hostname,
          port: u.port,
          method: 'PUT',
          path,
          headers: { authorization: `Bearer ${token}`, 'transfer-encoding': 'chunked' },
        },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on('error', reject);
      for (let i = 0; i < 4; i++) req.write(Buffer.alloc(512));
      req.end();
    });
    expect(status).toBe(413);
    expect(existsSync(join(bed.cp.dir, 'files', 'alice', 'output', 'big.png'))).toBe(false);
  });
});
