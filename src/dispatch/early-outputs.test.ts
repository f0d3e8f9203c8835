/**
 * Outputs announced while their worker still uploads them (`welcome.earlyOutputs`, one process):
 * the owner hears `executed` and ComfyUI's `execution_success` at once, `/view` answers an
 * announced file the moment it is stored (never a 404 for a file that is on its way), and the
 * final `executing` still waits until the job's completion is recorded, so `/history` has it.
 */
import { connect } from 'node:net';
import WebSocket from 'ws';
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryClusterHub } from '../cluster/cluster-bus.js';
import type { ServiceOptions } from '../services.js';
import {
  PROMPT,
  TestAgent,
  rawRequest,
  startControlPlane,
  until,
  type ControlPlane,
} from '../../test/support/worker-hub-kit.js';

let cp: ControlPlane | undefined;
const closers: (() => Promise<unknown> | void)[] = [];

afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
  await cp?.close();
  cp = undefined;
});

const PASSWORD = 'pw-alice-0123456789';
const basic = `Basic ${Buffer.from(`alice:${PASSWORD}`).toString('base64')}`;

/** A control plane, alice with her page open, and a worker holding her job. */
async function holdingAliceJob(
  env: Record<string, string> = {},
  services?: ServiceOptions,
  hello: Parameters<typeof TestAgent.register>[2] = {},
) {
  cp = await startControlPlane(env, services ? { services } : {});
  await cp.services.accounts.create('alice', 'participant', PASSWORD);
  const page: { type: string; data: Record<string, unknown> }[] = [];
  const ws = new WebSocket(`${cp.wsUrl.replace(/\/worker\/v1\/ws$/, '')}/alice/ws?clientId=tab`, {
    headers: { authorization: basic },
  });
  closers.push(() => ws.close());
  ws.on('message', (d, binary) => {
    if (!binary) page.push(JSON.parse(String(d)) as (typeof page)[number]);
  });
  await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
  const token = await cp.token('gpu');
  const { agent, welcome } = await TestAgent.register(cp.wsUrl, token, hello);
  closers.push(() => agent.close());
  const job = await cp.services.queue.enqueue({
    user: 'alice',
    prompt: PROMPT,
    metadata: { client_id: 'tab' },
  });
  await agent.next('assign');
  const event = (type: string, data: Record<string, unknown>, seq: number) =>
    agent.send({
      type: 'job_event',
      jobId: job.id,
      attempt: 1,
      event: { type, data: { prompt_id: 'p', ...data } },
      run: 'p',
      seq,
    });
  const view = (filename: string) =>
    fetch(`${cp!.url}/alice/api/view?filename=${filename}&type=output&subfolder=`, {
      headers: { authorization: basic },
    });
  const upload = (body: string) =>
    rawRequest(
      cp!.url,
      'PUT',
      `/worker/v1/jobs/${job.id}/attempts/1/outputs/9/${job.id}/ComfyUI_00001_.png?kind=images`,
      {
        headers: { authorization: `Bearer ${token}`, 'content-type': 'image/png' },
        body: Buffer.from(body),
      },
    );
  /** A `/view` of `filename` that has had no answer 150 ms later; `answer` is its answer to come. */
  const viewStillWaiting = async (filename: string) => {
    let answered = false;
    const viewing = view(filename).then(async (r) => {
      answered = true;
      return { status: r.status, body: await r.text() };
    });
    await new Promise((r) => setTimeout(r, 150));
    expect(answered).toBe(false);
    // Wrapped: an async function's returned promise would be awaited with it.
    return { answer: viewing };
  };
  /** The name the page got for the file of the `executed` (waits for it to arrive). */
  const announcedName = async () => {
    await until(() => page.some((m) => m.type === 'executed'), 3000, 'the executed on the page');
    const named = page.find((m) => m.type === 'executed')!.data.output as { images: { filename: string }[] };
    return named.images[0]!.filename;
  };
  /** ComfyUI started the job and its SaveImage named a file. */
  const announce = () => {
    event('execution_start', {}, 0);
    event('executed', executed(job.id), 1);
    return announcedName();
  };
  return { page, agent, welcome, job, token, event, view, viewStillWaiting, upload, announce, announcedName };
}

const executed = (jobId: string) => ({
  node: '9',
  display_node: '9',
  output: { images: [{ filename: 'ComfyUI_00001_.png', subfolder: `alice/${jobId}`, type: 'output' }] },
});

describe('outputs announced before they are stored (one process)', () => {
  it('the welcome offers it; the owner hears the file and the success at once; /view waits for the upload', async () => {
    const t = await holdingAliceJob();
    expect(t.welcome.earlyOutputs).toBe(true);
    t.event('execution_start', {}, 0);
    t.event('executed', executed(t.job.id), 1);
    t.event('execution_success', {}, 2);
    t.event('executing', { node: null }, 3);
    await until(() => t.page.some((m) => m.type === 'execution_success'), 3000, 'the success on the page');
    const filename = await t.announcedName();
    // Not recorded yet: ComfyUI's final `executing` waits for the record.
    expect(t.page.some((m) => m.type === 'executing' && m.data.node === null)).toBe(false);

    const viewing = (await t.viewStillWaiting(filename)).answer;
    expect((await t.upload('the png')).status).toBe(200);
    await expect(viewing).resolves.toEqual({ status: 200, body: 'the png' });

    t.agent.send({ type: 'job_completed', jobId: t.job.id, attempt: 1, outputs: [] });
    await until(
      () => t.page.some((m) => m.type === 'executing' && m.data.node === null),
      3000,
      'the final executing',
    );
    const types = t.page.filter((m) => m.data?.prompt_id === t.job.id).map((m) => m.type);
    expect(types.filter((x) => x !== 'status')).toEqual([
      'execution_start',
      'executed',
      'execution_success',
      'executing',
    ]);
  });

  it('an upload that lands while /view first looks for the file is found, not a 404', async () => {
    const t = await holdingAliceJob();
    const filename = await t.announce();
    // The first look finds nothing, and the upload completes before that answer arrives.
    const files = cp!.services.files;
    const stat = files.stat.bind(files);
    let raced = false;
    files.stat = async (key) => {
      if (raced || !key.endsWith(`/${filename}`)) return stat(key);
      raced = true;
      const before = await stat(key);
      expect((await t.upload('raced png')).status).toBe(200);
      return before;
    };
    const r = await t.view(filename);
    expect(raced).toBe(true);
    expect(r.status).toBe(200);
    expect(await r.text()).toBe('raced png');
  });

  it('/view answers from the upload the moment it is in, before the file is written to disk', async () => {
    const t = await holdingAliceJob();
    const filename = await t.announce();
    const viewing = t
      .view(filename)
      .then(async (r) => ({ status: r.status, body: await r.text(), etag: r.headers.get('etag') }));
    // The disk write waits for us: whatever /view answers meanwhile came from the upload itself.
    const files = cp!.services.files;
    const write = files.write.bind(files);
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let writing = false;
    files.write = async (key, body, opts) => {
      writing = true;
      await held;
      return write(key, body, opts);
    };
    const uploading = t.upload('the png');
    const early = await viewing;
    expect(early).toMatchObject({ status: 200, body: 'the png' });
    await until(() => writing, 3000, 'the disk write');
    // Asked again while it is still being written: the same bytes.
    const again = await t.view(filename);
    expect(again.status).toBe(200);
    expect(await again.text()).toBe('the png');
    const ranged = await fetch(`${cp!.url}/alice/api/view?filename=${filename}&type=output&subfolder=`, {
      headers: { authorization: basic, range: 'bytes=4-6' },
    });
    expect(ranged.status).toBe(206);
    expect(await ranged.text()).toBe('png');
    release();
    expect((await uploading).status).toBe(200);
    expect(cp!.services.inFlight!.size).toBe(0);
    const stored = await t.view(filename);
    expect(await stored.text()).toBe('the png');
    // Stored with the time it was first served under: a browser's cached copy stays valid.
    expect(stored.headers.get('etag')).toBe(early.etag);
  });

  it('an upload whose disk write fails is not served; the repeated upload is', async () => {
    const t = await holdingAliceJob();
    const filename = await t.announce();
    const files = cp!.services.files;
    const write = files.write.bind(files);
    let failed = false;
    files.write = async (key, body, opts) => {
      if (!failed) {
        failed = true;
        throw new Error('disk full');
      }
      return write(key, body, opts);
    };
    expect((await t.upload('lost png')).status).toBe(500);
    // Still on its way (the agent uploads it again): /view waits, and never gets the lost bytes.
    const viewing = (await t.viewStillWaiting(filename)).answer;
    expect((await t.upload('the png')).status).toBe(200);
    await expect(viewing).resolves.toEqual({ status: 200, body: 'the png' });
  });

  it('an upload cut off midway leaves nothing in hand or stored; the repeated upload is served', async () => {
    const t = await holdingAliceJob();
    const filename = await t.announce();
    const { hostname, port } = new URL(cp!.url);
    const sock = connect(Number(port), hostname);
    await new Promise((r) => sock.once('connect', r));
    sock.write(
      `PUT /worker/v1/jobs/${t.job.id}/attempts/1/outputs/9/${t.job.id}/ComfyUI_00001_.png?kind=images HTTP/1.1\r\n` +
        `host: ${hostname}\r\nauthorization: Bearer ${t.token}\r\ncontent-type: image/png\r\n` +
        'content-length: 100\r\n\r\nonly ten b',
    );
    await new Promise((r) => setTimeout(r, 100));
    sock.destroy();
    await new Promise((r) => setTimeout(r, 100));
    const key = `alice/output/${filename}`;
    expect(cp!.services.inFlight!.inHand(key)).toBeUndefined();
    expect(await cp!.services.files.stat(key)).toBeNull();
    const viewing = t.view(filename).then(async (r) => ({ status: r.status, body: await r.text() }));
    expect((await t.upload('the png')).status).toBe(200);
    await expect(viewing).resolves.toEqual({ status: 200, body: 'the png' });
    // The key looked at above is the file's.
    expect(await cp!.services.files.stat(key)).toMatchObject({ size: 7 });
  });

  it('a /view client that went away while the file was first looked for is not waited for', async () => {
    const t = await holdingAliceJob();
    const filename = await t.announce();
    const files = cp!.services.files;
    const stat = files.stat.bind(files);
    const client = new AbortController();
    files.stat = async (key) => {
      if (key.endsWith(`/${filename}`) && !client.signal.aborted) {
        client.abort();
        await new Promise((r) => setTimeout(r, 200));
      }
      return stat(key);
    };
    const viewing = fetch(`${cp!.url}/alice/api/view?filename=${filename}&type=output&subfolder=`, {
      headers: { authorization: basic },
      signal: client.signal,
    }).catch(() => 'gone');
    expect(await viewing).toBe('gone');
    await new Promise((r) => setTimeout(r, 300));
    expect(cp!.services.inFlight!.waiting).toBe(0);
    expect(cp!.services.inFlight!.size).toBe(1);
  });

  it('a cancelled job whose ComfyUI still finished a node: its file is not waited for (its agent uploads nothing)', async () => {
    const t = await holdingAliceJob();
    t.event('execution_start', {}, 0);
    await until(() => t.page.some((m) => m.type === 'execution_start'), 3000, 'the start on the page');
    await cp!.services.queue.cancel(t.job.id);
    await t.agent.next('cancel');
    t.event('executed', executed(t.job.id), 1);
    t.event('execution_interrupted', {}, 2);
    t.event('executing', { node: null }, 3);
    const filename = await t.announcedName();
    t.agent.send({ type: 'job_cancelled', jobId: t.job.id, attempt: 1 });
    expect(cp!.services.inFlight!.size).toBe(0);
    const t0 = performance.now();
    expect((await t.view(filename)).status).toBe(404);
    expect(performance.now() - t0).toBeLessThan(1000);
  });

  it('a job that fails before its upload lands answers the waiting /view with 404', async () => {
    const t = await holdingAliceJob();
    const viewing = t.view(await t.announce()).then((r) => r.status);
    await new Promise((r) => setTimeout(r, 100));
    t.agent.send({
      type: 'job_failed',
      jobId: t.job.id,
      attempt: 1,
      error: { reason: 'upload_failed', message: 'the control plane was away' },
    });
    await expect(viewing).resolves.toBe(404);
    // A name nobody announced is a 404 at once, as before.
    expect((await t.view('never_announced.png')).status).toBe(404);
  });

  it("from ComfyUI's success on, the queue routes show the job completed, exactly as its record then does", async () => {
    const t = await holdingAliceJob();
    const get = async (path: string) => {
      const r = await fetch(`${cp!.url}/alice/api${path}`, { headers: { authorization: basic } });
      expect(r.status).toBe(200);
      return (await r.json()) as Record<string, unknown>;
    };
    const filename = await t.announce();
    // Running: not in history yet, ComfyUI's queue has it.
    expect(await get(`/history/${t.job.id}`)).toEqual({});
    expect((await get('/queue')).queue_running).toHaveLength(1);
    t.event('execution_success', {}, 2);
    t.event('executing', { node: null }, 3);
    await until(() => t.page.some((m) => m.type === 'execution_success'), 3000, 'the success on the page');

    // ComfyUI writes its history right after `execution_success`: so do we, while the file uploads.
    const early = await get(`/history/${t.job.id}`);
    const entry = early[t.job.id] as { outputs: unknown; status: { status_str: string; completed: boolean } };
    expect(entry.status).toMatchObject({ status_str: 'success', completed: true });
    expect(entry.outputs).toEqual({ '9': { images: [{ filename, subfolder: '', type: 'output' }] } });
    expect((await get('/history'))[t.job.id]).toEqual(entry);
    expect((await get('/queue')).queue_running).toEqual([]);
    expect(await get(`/jobs/${t.job.id}`)).toMatchObject({ status: 'completed', outputs_count: 1 });
    expect((await get('/jobs?status=completed')).jobs).toMatchObject([{ id: t.job.id }]);
    expect(t.page.some((m) => m.type === 'executing' && m.data.node === null)).toBe(false);

    // The file it lists is on its way: /view answers once it lands.
    const viewing = t.view(filename).then((r) => r.status);
    expect((await t.upload('the png')).status).toBe(200);
    expect(await viewing).toBe(200);
    t.agent.send({
      type: 'job_completed',
      jobId: t.job.id,
      attempt: 1,
      outputs: [
        {
          nodeId: '9',
          filename: 'ComfyUI_00001_.png',
          subfolder: `alice/${t.job.id}`,
          type: 'output',
          kind: 'images',
        },
      ],
    });
    await until(
      () => t.page.some((m) => m.type === 'executing' && m.data.node === null),
      3000,
      'the final executing',
    );
    // Recorded: the same entry, timestamps included; nothing is left standing in for it.
    expect((await cp!.services.store.getJob(t.job.id))?.status).toBe('completed');
    expect(cp!.services.inFlight!.endingOf(t.job.id)).toBeUndefined();
    expect(await get(`/history/${t.job.id}`)).toEqual(early);
  });

  it('shown completed, it is done as in ComfyUI: an interrupt or a cancel no longer touches it', async () => {
    const t = await holdingAliceJob();
    await t.announce();
    t.event('execution_success', {}, 2);
    await until(() => t.page.some((m) => m.type === 'execution_success'), 3000, 'the success on the page');
    const post = (path: string, body?: unknown) =>
      fetch(`${cp!.url}/alice/api${path}`, {
        method: 'POST',
        headers: { authorization: basic, 'content-type': 'application/json' },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
    expect((await post('/interrupt')).status).toBe(200);
    expect((await post('/interrupt', { prompt_id: t.job.id })).status).toBe(200);
    expect(await (await post(`/jobs/${t.job.id}/cancel`)).json()).toEqual({ cancelled: false });
    expect(await (await post('/jobs/cancel', { job_ids: [t.job.id] })).json()).toEqual({ cancelled: false });
    expect((await cp!.services.store.getJob(t.job.id))?.status).toBe('running');
    // Nobody asked the worker to stop it.
    expect(t.agent.inbox.some((m) => m.type === 'cancel')).toBe(false);
    const r = await fetch(`${cp!.url}/alice/api/history/${t.job.id}`, { headers: { authorization: basic } });
    const entry = ((await r.json()) as Record<string, { status: { status_str: string } }>)[t.job.id];
    expect(entry?.status.status_str).toBe('success');
  });

  it('a worker that reconnects mid-job keeps what it announced: the early entry lists every output', async () => {
    const t = await holdingAliceJob({}, undefined, { eventSeq: true });
    const executedAs = (node: string, n: number) => ({
      node,
      display_node: node,
      output: {
        images: [{ filename: `ComfyUI_0000${n}_.png`, subfolder: `alice/${t.job.id}`, type: 'output' }],
      },
    });
    t.event('execution_start', {}, 0);
    t.event('executed', executedAs('9', 1), 1);
    await until(() => t.page.some((m) => m.type === 'executed'), 3000, 'the first executed');
    t.agent.close();
    const { agent } = await TestAgent.register(cp!.wsUrl, t.token, {
      eventSeq: true,
      inFlight: [{ jobId: t.job.id, attempt: 1, state: 'running' }],
    });
    closers.push(() => agent.close());
    // The agent sends its events again after a reconnect; this process took the first two already.
    const again = (type: string, data: Record<string, unknown>, seq: number) =>
      agent.send({
        type: 'job_event',
        jobId: t.job.id,
        attempt: 1,
        event: { type, data: { prompt_id: 'p', ...data } },
        run: 'p',
        seq,
      });
    again('execution_start', {}, 0);
    again('executed', executedAs('9', 1), 1);
    again('executed', executedAs('10', 2), 2);
    again('execution_success', {}, 3);
    await until(() => t.page.some((m) => m.type === 'execution_success'), 3000, 'the success on the page');
    const get = async () =>
      (await (
        await fetch(`${cp!.url}/alice/api/history/${t.job.id}`, { headers: { authorization: basic } })
      ).json()) as Record<string, { outputs: Record<string, unknown> }>;
    const early = await get();
    expect(Object.keys(early[t.job.id]!.outputs).sort()).toEqual(['10', '9']);
    agent.send({
      type: 'job_completed',
      jobId: t.job.id,
      attempt: 1,
      outputs: ['9', '10'].map((node, i) => ({
        nodeId: node,
        filename: `ComfyUI_0000${i + 1}_.png`,
        subfolder: `alice/${t.job.id}`,
        type: 'output' as const,
        kind: 'images',
      })),
    });
    await until(
      async () => (await cp!.services.store.getJob(t.job.id))?.status === 'completed',
      3000,
      'the record',
    );
    expect(await get()).toEqual(early);
  });

  it('a job whose upload then fails for good shows failed, not the success announced early', async () => {
    const t = await holdingAliceJob();
    await t.announce();
    t.event('execution_success', {}, 2);
    await until(() => t.page.some((m) => m.type === 'execution_success'), 3000, 'the success on the page');
    t.agent.send({
      type: 'job_failed',
      jobId: t.job.id,
      attempt: 1,
      error: { reason: 'upload_failed', message: 'the control plane was away' },
    });
    await until(
      async () => (await cp!.services.store.getJob(t.job.id))?.status === 'failed',
      3000,
      'the failure recorded',
    );
    const r = await fetch(`${cp!.url}/alice/api/history/${t.job.id}`, { headers: { authorization: basic } });
    const entry = ((await r.json()) as Record<string, { status: { status_str: string } }>)[t.job.id];
    expect(entry?.status.status_str).toBe('error');
  });

  it('several processes: not offered (an upload may land on another process), the success waits for the record', async () => {
    const t = await holdingAliceJob({}, { cluster: new MemoryClusterHub().join() });
    expect(t.welcome.earlyOutputs).toBeUndefined();
    t.event('execution_start', {}, 0);
    t.event('execution_success', {}, 1);
    t.event('executing', { node: null }, 2);
    await until(() => t.page.some((m) => m.type === 'execution_start'), 3000, 'the start on the page');
    await new Promise((r) => setTimeout(r, 150));
    expect(t.page.some((m) => m.type === 'execution_success')).toBe(false);
    t.agent.send({ type: 'job_completed', jobId: t.job.id, attempt: 1, outputs: [] });
    await until(
      () => t.page.some((m) => m.type === 'execution_success'),
      3000,
      'the success after the record',
    );
  });
});
