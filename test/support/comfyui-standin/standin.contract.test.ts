/**
 * Contract tests: the stand-in replays the recorded ComfyUI v0.3.64 sessions and must answer
 * with the same status codes, headers, bodies (machine-specific values normalised) and the same
 * WebSocket message sequences. Fixture prompts that were slow on the recording machine (2048²
 * images) are shrunk and slowed down with `nodeDelayMs` instead, which keeps node boundaries.
 */
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { Standin } from './server.js';
import {
  RecordingClient,
  fixture,
  http,
  makePng,
  normalize,
  postJson,
  readPng,
  shapeOf,
  transcriptTypes,
  types,
  uploadForm,
  withStandin,
  type Json,
} from './test-helpers.js';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** Runs a recorded request body as a new client; returns the client, the response and the id map. */
async function replay(s: Standin, recorded: Json, featureFlags?: Record<string, unknown>) {
  const clientId = randomUUID();
  const client = await RecordingClient.connect(s.wsUrl, clientId, featureFlags);
  const res = await postJson(`${s.url}${recorded.request.path}`, {
    ...recorded.request.body,
    client_id: clientId,
  });
  expect(res.status).toBe(recorded.response.status);
  const promptId: string = res.json.prompt_id;
  await client.waitForEnd(promptId);
  const ours = { [promptId]: '<prompt>', [clientId]: '<client>' };
  const theirs = { [recorded.response.body.prompt_id]: '<prompt>', [recorded.client_id]: '<client>' };
  return { client, res, promptId, ours, theirs };
}

/** Replaces 2048/4096 sizes by 32/64: same graph, a fraction of the work. */
function shrink(prompt: Json): Json {
  const out = structuredClone(prompt);
  for (const node of Object.values<Json>(out)) {
    for (const key of ['width', 'height']) if (node.inputs[key] > 256) node.inputs[key] /= 64;
  }
  return out;
}

/** The client got the recorded transcript's frames, in order, and its text messages normalised alike. */
function expectRecordedMessages(
  client: RecordingClient,
  t: Json,
  ours: Record<string, string>,
  theirs: Record<string, string>,
): void {
  expect(types(client.messages)).toEqual(transcriptTypes(t.messages));
  expect(normalize(client.text(), ours)).toEqual(
    normalize(
      t.messages.map((m: Json) => m.data),
      theirs,
    ),
  );
}

/** Connects a recording client, then queues the recorded `prompt` (shrunk) as that client. */
async function connectAndQueue(
  s: Standin,
  prompt: Json,
): Promise<{ clientId: string; client: RecordingClient; promptId: string }> {
  const clientId = randomUUID();
  const client = await RecordingClient.connect(s.wsUrl, clientId);
  const res = await postJson(`${s.url}/api/prompt`, { prompt: shrink(prompt), client_id: clientId });
  return { clientId, client, promptId: res.json.prompt_id };
}

/** Sets the queue `number` (the recording's counter ran across sessions) to a placeholder. */
function withoutNumber(history: Json): Json {
  const out = structuredClone(history);
  for (const entry of Object.values<Json>(out)) entry.prompt[0] = '<number>';
  return out;
}

/** system_stats' shape; argv's length depends on the command line, only its element type counts. */
function statsShape(stats: Json): Json {
  return shapeOf({
    ...stats,
    system: { ...stats.system, argv: [...new Set(stats.system.argv.map(shapeOf))] },
  });
}

describe('comfyui stand-in: metadata routes (http_meta.json, misc_responses.json)', () => {
  it('serves the recorded bodies, status codes and content types at /api/x and /x', () =>
    withStandin(async (s) => {
      const meta = fixture('http_meta.json');
      for (const entry of meta.entries) {
        if (entry.file === 'history_full.json') continue; // needs the full recording session
        const expected = fixture(entry.file);
        for (const path of [entry.path, entry.path.replace(/^\/api/, '')]) {
          const res = await http(`${s.url}${path}`);
          expect(res.status, path).toBe(entry.status);
          expect(res.headers.get('content-type'), path).toBe(entry.headers['Content-Type']);
          if (entry.file === 'system_stats.json') expect(statsShape(res.json)).toEqual(statsShape(expected));
          else if (entry.file === 'object_info.json') {
            const { StandinSleep, ...recorded } = res.json;
            expect(recorded).toEqual(expected);
            expect(StandinSleep.name).toBe('StandinSleep');
          } else expect(res.json, path).toEqual(expected);
        }
      }
    }));

  it('answers the misc requests like the recording', () =>
    withStandin(async (s) => {
      const misc = fixture('misc_responses.json');
      for (const key of Object.keys(misc).filter((k) => k !== 'note' && k !== 'history_max_items_2')) {
        const { request, response } = misc[key];
        const res = await http(`${s.url}${request.path}`);
        expect(res.status, key).toBe(response.status);
        expect(res.headers.get('content-type'), key).toBe(response.headers['Content-Type']);
        if (typeof response.body === 'string') expect(res.text, key).toBe(response.body);
        else expect(res.json, key).toEqual(response.body);
      }
    }));

  it('vendors exactly the recorded object_info', () => {
    const vendored = fileURLToPath(new URL('./vendored/object_info.v0.3.64.json', import.meta.url));
    expect(JSON.parse(readFileSync(vendored, 'utf8'))).toEqual(fixture('object_info.json'));
  });
});

describe('comfyui stand-in: runs (ws_transcript_*.json)', () => {
  it('model-free run: same messages, history and /view files', () =>
    withStandin(async (s) => {
      const t = fixture('ws_transcript_modelfree.json');
      const { client, res, promptId, ours, theirs } = await replay(s, t);
      expect(res.headers.get('content-type')).toBe(t.response.headers['Content-Type']);
      expect(normalize(res.json, ours)).toEqual(normalize(t.response.body, theirs));
      expectRecordedMessages(client, t, ours, theirs);

      const history = await http(`${s.url}/api/history/${promptId}`);
      expect(normalize(history.json, ours)).toEqual(normalize(t.history, theirs));
      const all = await http(`${s.url}/api/history`);
      expect(normalize(all.json, ours)).toEqual(normalize(t.history_full_after, theirs));

      const tempName = history.json[promptId].outputs['4'].images[0].filename;
      const expectedPixel = { output: [204, 153, 101, 255], temp: [51, 102, 153, 255] }; // float32 like torch
      for (const v of t.view) {
        const path = v.request.path.replace(/ComfyUI_temp_[a-z]{5}_00001_\.png/, tempName);
        const view = await http(`${s.url}${path}`);
        expect(view.status).toBe(v.response.status);
        for (const h of ['Content-Type', 'Accept-Ranges'])
          expect(view.headers.get(h)).toBe(v.response.headers[h]);
        expect(normalize(view.headers.get('content-disposition'))).toBe(
          normalize(v.response.headers['Content-Disposition']),
        );
        expect(view.bytes.subarray(0, 8).toString('hex')).toBe(v.response.body_first8_hex);
        const png = readPng(view.bytes);
        expect([png.width, png.height]).toEqual([64, 48]);
        expect(png.pixel(10, 10)).toEqual(expectedPixel[v.request.query.type as 'output' | 'temp']);
      }
      await client.close();
    }));

  it('cached run: execution_cached lists every node and executed is replayed', () =>
    withStandin(async (s) => {
      const first = await replay(s, fixture('ws_transcript_modelfree.json'));
      await first.client.close();
      const t = fixture('ws_transcript_cached.json');
      const { client, res, promptId, ours, theirs } = await replay(s, t);
      expect(normalize(res.json, ours)).toEqual(normalize(t.response.body, theirs));
      expectRecordedMessages(client, t, ours, theirs);
      const history = await http(`${s.url}/api/history/${promptId}`);
      expect(normalize(history.json, ours)).toEqual(normalize(t.history, theirs));
      await client.close();
    }));

  it('feature_flags handshake and the binary TEXT frame of GetImageSize', () =>
    withStandin(async (s) => {
      const t = fixture('ws_transcript_binary_text_and_feature_flags.json');
      const { client, promptId, ours, theirs } = await replay(s, t, t.client_sent[0].data.data);
      expect(types(client.messages)).toEqual(transcriptTypes(t.messages));
      const textFrames = t.messages.filter((m: Json) => m.kind === 'text').map((m: Json) => m.data);
      expect(normalize(client.text(), ours)).toEqual(normalize(textFrames, theirs));

      const recorded = t.messages.find((m: Json) => m.kind === 'binary').data;
      const [frame] = client.binary();
      expect(frame!.length).toBe(recorded.length);
      expect(frame!.subarray(0, 8).toString('hex')).toBe(recorded.first8_hex);
      expect(frame!.readUInt32BE(4)).toBe(recorded.node_id_length);
      expect(frame!.subarray(8, 8 + recorded.node_id_length).toString()).toBe(recorded.node_id);
      expect(frame!.subarray(8 + recorded.node_id_length).toString()).toBe(recorded.text);

      const history = await http(`${s.url}/api/history/${promptId}`);
      expect(withoutNumber(normalize(history.json, ours))).toEqual(
        withoutNumber(normalize(t.history, theirs)),
      );
      await client.close();
    }));

  it('execution_error: a corrupt upload passes validation and fails at run time', () =>
    withStandin(async (s) => {
      const t = fixture('ws_transcript_execution_error.json');
      const upload = t.upload_of_corrupt_file;
      const corrupt = Buffer.from('this is not a png file!');
      expect(corrupt.length).toBe(upload.request.multipart_files.image.length);
      const form = uploadForm(upload.request.multipart_fields, {
        name: 'fixture_corrupt.png',
        bytes: corrupt,
      });
      const up = await http(`${s.url}/api/upload/image`, { method: 'POST', body: form });
      expect([up.status, up.json]).toEqual([upload.response.status, upload.response.body]);

      const { client, promptId, ours, theirs } = await replay(s, t);
      expectRecordedMessages(client, t, ours, theirs);
      const history = await http(`${s.url}/api/history/${promptId}`);
      expect(withoutNumber(normalize(history.json, ours))).toEqual(
        withoutNumber(normalize(t.history, theirs)),
      );
      await client.close();
    }));
});

describe('comfyui stand-in: POST /prompt validation (prompt_errors.json)', () => {
  it('answers every recorded invalid prompt with the recorded body, and counts numbers alike', () =>
    withStandin(async (s) => {
      const f = fixture('prompt_errors.json');
      let consumed = 0;
      for (const c of f.cases) {
        const res =
          c.case === 'f_malformed_json'
            ? await http(`${s.url}/api/prompt`, {
                method: 'POST',
                headers: { 'Content-Type': 'application/json' },
                body: '{"prompt": {',
              })
            : await postJson(`${s.url}/api/prompt`, c.request.body);
        if (c.case !== 'f_malformed_json') consumed++;
        expect(res.status, c.case).toBe(c.response.status);
        expect(res.headers.get('content-type'), c.case).toBe(c.response.headers['Content-Type']);
        if (typeof c.response.body === 'string') expect(res.text, c.case).toBe(c.response.body);
        else expect(normalize(res.json), c.case).toEqual(normalize(c.response.body));
      }
      // The recording had 6 accepted prompts before these cases.
      const valid = f.valid_prompt_after_errors;
      const res = await postJson(`${s.url}/api/prompt`, valid.request.body);
      expect(res.status).toBe(200);
      expect(res.json.number).toBe(valid.response.body.number - 6);
      expect(res.json.number).toBe(consumed);
      await s.waitForIdle();
    }));
});

describe('comfyui stand-in: uploads and LoadImage (upload_image.json)', () => {
  it('names, collisions, errors, the LoadImage list and both LoadImage runs', () =>
    withStandin(async (s) => {
      const f = fixture('upload_image.json');
      const a = makePng(8, 6, [200, 30, 30]);
      const b = makePng(8, 6, [30, 200, 30]);
      const bytesFor = ['a', 'a', 'a', 'b', 'b', 'a', null, 'a', 'a'];
      for (const [i, u] of f.uploads.entries()) {
        const file = u.request.multipart_files.image;
        const bytes = bytesFor[i] === 'a' ? a : b;
        const form = uploadForm(
          u.request.multipart_fields,
          file ? { name: file.filename, bytes } : undefined,
        );
        const res = await http(`${s.url}${u.request.path}`, { method: 'POST', body: form });
        expect(res.status, u.label).toBe(u.response.status);
        expect(res.headers.get('content-type'), u.label).toBe(u.response.headers['Content-Type']);
        if (u.response.body === '') expect(res.bytes.length, u.label).toBe(0);
        else expect(res.json, u.label).toEqual(u.response.body);
      }
      const info = await http(`${s.url}/api/object_info/LoadImage`);
      expect(info.json).toEqual(f.object_info_LoadImage_after_uploads);

      for (const [run, source] of [
        [f.loadimage_run, b], // u5 overwrote fixture_upload.png with b
        [f.loadimage_subfolder_run, a],
      ] as const) {
        const { client, promptId, ours, theirs } = await replay(s, {
          ...run,
          client_id: run.history[run.response.body.prompt_id].prompt[3].client_id,
        });
        const history = await http(`${s.url}/api/history/${promptId}`);
        expect(withoutNumber(normalize(history.json, ours))).toEqual(
          withoutNumber(normalize(run.history, theirs)),
        );
        if (run.messages) expect(types(client.messages)).toEqual(transcriptTypes(run.messages));
        const out = history.json[promptId].outputs['2'].images[0];
        const view = await http(`${s.url}/api/view?filename=${out.filename}&subfolder=&type=output`);
        expect(view.bytes.equals(source)).toBe(false); // re-encoded by SaveImage (with metadata) ...
        expect(readPng(view.bytes).pixel(3, 3)).toEqual(readPng(source).pixel(3, 3)); // ... same pixels
        await client.close();
      }
    }));
});

describe('comfyui stand-in: /view (view_errors.json)', () => {
  it('serves files and refuses bad paths with the recorded status codes', () =>
    withStandin(async (s) => {
      const run = await replay(s, fixture('ws_transcript_modelfree.json'));
      await run.client.close();
      const png = makePng(8, 6, [1, 2, 3]);
      for (const subfolder of ['', 'fixtures']) {
        const form = uploadForm({ type: 'input', subfolder }, { name: 'fixture_upload.png', bytes: png });
        await http(`${s.url}/api/upload/image`, { method: 'POST', body: form });
      }
      for (const c of fixture('view_errors.json').cases) {
        const res = await http(`${s.url}${c.request.path}`);
        expect(res.status, c.label).toBe(c.response.status);
        if (c.response.status !== 200) {
          expect(res.headers.get('content-type'), c.label).toBe('application/octet-stream');
          expect(res.bytes.length, c.label).toBe(0);
          continue;
        }
        expect(res.headers.get('content-disposition'), c.label).toBe(
          c.response.headers['Content-Disposition'],
        );
        expect(res.bytes.subarray(0, 8).toString('hex'), c.label).toBe('89504e470d0a1a0a');
        // Known deviation: no WebP/JPEG encoder, `preview=` answers with a PNG.
        if (!c.request.path.includes('preview=')) {
          expect(res.headers.get('content-type'), c.label).toBe(c.response.headers['Content-Type']);
        }
      }
    }));
});

describe('comfyui stand-in: queue, interrupt and delete (queue_running.json, interrupt_and_delete.json)', () => {
  /** Status values in order, and the other messages in order, to compare without timing races. */
  const split = (typesList: string[], statuses: number[]) => ({
    others: typesList.filter((t) => t !== 'status'),
    statuses,
  });
  const recordedSplit = (messages: Json[]) =>
    split(
      transcriptTypes(messages),
      messages
        .filter((m) => m.data.type === 'status')
        .map((m) => m.data.data.status.exec_info.queue_remaining),
    );
  const liveSplit = (c: RecordingClient) =>
    split(
      types(c.messages),
      c.text('status').map((m) => m.data.status.exec_info.queue_remaining),
    );

  it('lists running and pending tuples like ComfyUI and runs them in order', () =>
    withStandin(async (s) => {
      const f = fixture('queue_running.json');
      s.faults.nodeDelayMs = 100;
      const clientId = randomUUID();
      const client = await RecordingClient.connect(s.wsUrl, clientId);
      const ids: string[] = [];
      for (const post of f.posts) {
        const res = await postJson(`${s.url}/api/prompt`, {
          prompt: shrink(post.request.body.prompt),
          client_id: clientId,
        });
        ids.push(res.json.prompt_id);
      }
      const queue = await http(`${s.url}/api/queue`);
      const recorded = f.queue_snapshots[0];
      expect(queue.headers.get('content-type')).toBe(recorded.queue_headers['Content-Type']);
      const tupleShape = (q: Json) =>
        shapeOf({
          running: q.queue_running.map((x: Json) => [x[0], x[1], {}, x[3], x[4]]),
          pending: q.queue_pending.map((x: Json) => [x[0], x[1], {}, x[3], x[4]]),
        });
      expect(tupleShape(queue.json)).toEqual(tupleShape(recorded.queue));
      expect(queue.json.queue_running.map((x: Json) => [x[0], x[1], x[3], x[4]])).toEqual([
        [0, ids[0], { client_id: clientId }, ['3']],
      ]);
      expect(queue.json.queue_pending.map((x: Json) => x[1])).toEqual(ids.slice(1));
      expect((await http(`${s.url}/api/prompt`)).json).toEqual(recorded.prompt);

      await client.waitForEnd(ids[2]!);
      expect(liveSplit(client)).toEqual(recordedSplit(f.messages));
      const history = await http(`${s.url}/api/history`);
      expect(Object.keys(history.json)).toEqual(ids);
      expect(history.json[ids[1]!].outputs['3'].images[0].filename).toBe('ci_big_00002_.png');
      await client.close();
    }));

  it('global interrupt: the running node finishes, the next one reports execution_interrupted', () =>
    withStandin(async (s) => {
      const f = fixture('interrupt_and_delete.json').A_global_interrupt;
      s.faults.nodeDelayMs = 300;
      const { clientId, client, promptId } = await connectAndQueue(s, f.post.request.body.prompt);
      await client.waitFor((m) =>
        m.some((x) => x.kind === 'text' && x.type === 'executing' && x.data.node === '2'),
      );
      const during = await http(`${s.url}/api/queue`);
      expect(during.json.queue_running.map((x: Json) => x[1])).toEqual([promptId]);
      const interrupt = await http(`${s.url}/api/interrupt`, { method: 'POST' });
      expect([interrupt.status, interrupt.headers.get('content-type'), interrupt.text]).toEqual([
        200,
        'application/octet-stream',
        '',
      ]);
      await client.waitForEnd(promptId);

      const ours = { [promptId]: '<prompt>', [clientId]: '<client>' };
      const theirs = { [f.post.response.body.prompt_id]: '<prompt>', [f.client_id]: '<client>' };
      expect(types(client.messages)).toEqual(transcriptTypes(f.messages));
      const interrupted = (msgs: Json[]) => msgs.find((m) => m.type === 'execution_interrupted');
      expect(normalize(interrupted(client.text()), ours)).toEqual(
        normalize(interrupted(f.messages.map((m: Json) => m.data)), theirs),
      );
      const history = await http(`${s.url}/api/history/${promptId}`);
      const shrunk = normalize(withoutNumber(f.history), theirs);
      shrunk['<prompt>'].prompt[2] = shrink(shrunk['<prompt>'].prompt[2]);
      expect(normalize(withoutNumber(history.json), ours)).toEqual(shrunk);
      await client.close();
    }));

  it('targeted interrupt: another prompt id is a no-op, the running id interrupts', () =>
    withStandin(async (s) => {
      const f = fixture('interrupt_and_delete.json').B_targeted_interrupt;
      s.faults.nodeDelayMs = 250;
      const { client, promptId } = await connectAndQueue(s, f.post.request.body.prompt);
      const executing = (node: string) => (m: Json[]) =>
        m.some((x) => x.type === 'executing' && x.data?.node === node);
      await client.waitFor(executing('2'));
      const other = await postJson(`${s.url}/api/interrupt`, f.interrupt_non_matching_prompt_id.request.body);
      expect([other.status, other.text]).toEqual([200, '']);
      await client.waitFor(executing('3'));
      const mine = await postJson(`${s.url}/api/interrupt`, { prompt_id: promptId });
      expect([mine.status, mine.text]).toEqual([200, '']);
      await client.waitForEnd(promptId);

      expect(types(client.messages)).toEqual(transcriptTypes(f.messages));
      const live = client.text('execution_interrupted')[0]!.data;
      const recorded = f.messages.find((m: Json) => m.data.type === 'execution_interrupted').data.data;
      expect([live.node_id, live.node_type, [...live.executed].sort()]).toEqual([
        recorded.node_id,
        recorded.node_type,
        [...recorded.executed].sort(),
      ]);
      await client.close();
    }));

  it('deleting a pending prompt: queue before/after, two status messages, empty history', () =>
    withStandin(async (s) => {
      const f = fixture('interrupt_and_delete.json').C_queue_delete_pending;
      s.faults.nodeDelayMs = 150;
      const clientId = randomUUID();
      const client = await RecordingClient.connect(s.wsUrl, clientId);
      const running = await postJson(`${s.url}/api/prompt`, {
        prompt: shrink(f.post_running.request.body.prompt),
        client_id: clientId,
      });
      const pending = await postJson(`${s.url}/api/prompt`, {
        prompt: shrink(f.post_pending.request.body.prompt),
        client_id: clientId,
      });
      const ids = [running.json.prompt_id, pending.json.prompt_id];
      const before = await http(`${s.url}/api/queue`);
      const count = (q: Json) => [q.queue_running.length, q.queue_pending.length];
      expect(count(before.json)).toEqual(count(f.queue_before.response.body));
      expect(before.json.queue_pending[0][1]).toBe(ids[1]);

      const del = await postJson(`${s.url}/api/queue`, { delete: [ids[1]] });
      expect([del.status, del.headers.get('content-type'), del.text]).toEqual([
        200,
        'application/octet-stream',
        '',
      ]);
      const after = await http(`${s.url}/api/queue`);
      expect(count(after.json)).toEqual(count(f.queue_after.response.body));
      expect((await http(`${s.url}/api/prompt`)).json).toEqual(f.prompt_after_delete);
      await client.waitForEnd(ids[0]);

      expect(liveSplit(client)).toEqual(recordedSplit(f.messages));
      expect((await http(`${s.url}/api/history/${ids[1]}`)).json).toEqual(f.history_deleted);
      const history = await http(`${s.url}/api/history/${ids[0]}`);
      expect(history.json[ids[0]].status.status_str).toBe('success');
      await client.close();
    }));

  it('clear on an empty queue, deleting an unknown id and interrupting while idle all answer 200, empty', () =>
    withStandin(async (s) => {
      const d = fixture('interrupt_and_delete.json').D_misc;
      for (const key of Object.keys(d)) {
        const { request, response } = d[key];
        const init: RequestInit = { method: request.method };
        if (request.body)
          Object.assign(init, {
            headers: { 'Content-Type': 'application/json' },
            body: JSON.stringify(request.body),
          });
        const res = await http(`${s.url}${request.path}`, init);
        expect(
          [res.status, res.headers.get('content-type'), res.headers.get('content-length'), res.text],
          key,
        ).toEqual([
          response.status,
          response.headers['Content-Type'],
          response.headers['Content-Length'],
          response.body,
        ]);
      }
    }));
});

describe('comfyui stand-in: history (history_full.json, misc_responses.json)', () => {
  it('entries have the recorded shape; max_items, delete and clear work', () =>
    withStandin(async (s) => {
      const full = fixture('history_full.json');
      const ids: string[] = [];
      for (const color of [1, 2, 3]) {
        const prompt = { ...fixture('ws_transcript_modelfree.json').request.body.prompt };
        prompt['1'] = { class_type: 'EmptyImage', inputs: { width: 8, height: 8, batch_size: 1, color } };
        ids.push((await postJson(`${s.url}/api/prompt`, { prompt, client_id: 'c' })).json.prompt_id);
      }
      await s.waitForIdle();
      const all = await http(`${s.url}/api/history`);
      expect(Object.keys(all.json)).toEqual(ids);
      const recordedSuccess = full['bfd8ecf8-c0f4-4f77-92de-01f4edffe7ce'];
      expect(shapeOf(all.json[ids[0]!])).toEqual(shapeOf(recordedSuccess));

      const two = await http(`${s.url}/api/history?max_items=2`);
      expect(Object.keys(two.json)).toEqual(ids.slice(1));
      const del = await postJson(`${s.url}/api/history`, { delete: [ids[1]] });
      expect([del.status, del.text]).toEqual([200, '']);
      expect(Object.keys((await http(`${s.url}/api/history`)).json)).toEqual([ids[0], ids[2]]);
      await postJson(`${s.url}/api/history`, { clear: true });
      expect((await http(`${s.url}/api/history`)).json).toEqual({});
    }));
});
