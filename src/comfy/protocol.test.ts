import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  ApiPromptSchema,
  BinaryFrameError,
  HistorySchema,
  ObjectInfoSchema,
  PromptErrorBodySchema,
  QueueInfoSchema,
  QueuePromptBodySchema,
  QueuePromptResponseSchema,
  QueueSchema,
  StringListSchema,
  SystemStatsSchema,
  UploadResponseSchema,
  comboOptions,
  decodeBinaryFrame,
  encodeBinaryFrame,
  getInputInfo,
  isLink,
  parseObjectInfo,
  parseWsText,
  promptIdOf,
} from './protocol.js';
import { FIXTURES_ROOT } from '../../test/support/fixtures.js';

const FIXTURES = FIXTURES_ROOT;
const fx = (name: string): unknown =>
  JSON.parse(readFileSync(join(FIXTURES, 'comfyui-v0.3.64', name), 'utf8'));

interface Recorded {
  kind: 'text' | 'binary';
  data: Record<string, unknown>;
}

/** Every recorded WebSocket frame, from every transcript. */
function allMessages(): Recorded[] {
  const out: Recorded[] = [];
  const walk = (v: unknown) => {
    if (Array.isArray(v)) v.forEach(walk);
    else if (v && typeof v === 'object') {
      for (const [k, x] of Object.entries(v)) {
        if (
          k === 'messages' &&
          Array.isArray(x) &&
          x.every((m) => m && typeof m === 'object' && 'kind' in m)
        ) {
          out.push(...(x as Recorded[]));
        } else walk(x);
      }
    }
  };
  for (const f of [
    'ws_transcript_modelfree.json',
    'ws_transcript_cached.json',
    'ws_transcript_binary_text_and_feature_flags.json',
    'ws_transcript_execution_error.json',
    'queue_running.json',
    'interrupt_and_delete.json',
    'upload_image.json',
  ]) {
    walk(fx(f));
  }
  return out;
}

describe('HTTP schemas against the recordings', () => {
  it('parses object_info, with the node definitions intact', () => {
    const raw = fx('object_info.json') as Record<string, unknown>;
    const info = ObjectInfoSchema.parse(raw);
    expect(Object.keys(info)).toHaveLength(376);
    expect(info.EmptyImage?.input.required?.width).toEqual([
      'INT',
      { default: 512, min: 1, max: 16384, step: 1 },
    ]);
    const save = info.SaveVideo;
    if (!save) throw new Error('SaveVideo missing');
    expect(comboOptions(save.input.required?.format)).toEqual(['auto', 'mp4']);
    expect(comboOptions(info.ImageScale?.input.required?.crop)).toEqual(['disabled', 'center']);
    expect(comboOptions(info.ImageScale?.input.required?.width)).toBeNull();
    expect(getInputInfo(save, 'codec')).toMatchObject({ type: 'COMBO', category: 'required' });
    expect(getInputInfo(save, 'prompt')).toEqual({ type: 'PROMPT', category: 'hidden', options: {} });
    expect(getInputInfo(info.SaveImage ?? save, 'prompt')?.type).toBe('PROMPT');
    expect(getInputInfo(save, 'nope')).toBeNull();
    expect(info.PreviewAny?.input.required?.source).toEqual(['*', {}]);
  });

  it('keeps the good nodes of an object_info with one broken node', () => {
    const raw = { ...(fx('object_info.json') as Record<string, unknown>), Broken: { input: 5 } };
    expect(ObjectInfoSchema.safeParse(raw).success).toBe(false);
    const { objectInfo, invalid } = parseObjectInfo(raw);
    expect(invalid).toEqual(['Broken']);
    expect(Object.keys(objectInfo)).toHaveLength(376);
    expect(() => parseObjectInfo([])).toThrow(TypeError);
  });

  it('parses the small GET answers', () => {
    expect(SystemStatsSchema.parse(fx('system_stats.json')).system.comfyui_version).toBe('0.3.64');
    expect(StringListSchema.parse(fx('models.json'))).toContain('checkpoints');
    expect(StringListSchema.parse(fx('embeddings.json'))).toEqual([]);
    expect(QueueSchema.parse(fx('queue_empty.json'))).toEqual({ queue_running: [], queue_pending: [] });
    expect(QueueInfoSchema.parse(fx('prompt_get.json')).exec_info.queue_remaining).toBe(0);
  });

  it('parses queue snapshots and history', () => {
    const running = fx('queue_running.json') as { queue_snapshots: { queue: unknown; prompt: unknown }[] };
    for (const s of running.queue_snapshots) {
      QueueSchema.parse(s.queue);
      QueueInfoSchema.parse(s.prompt);
    }
    const first = QueueSchema.parse(running.queue_snapshots[0]?.queue);
    expect(first.queue_running).toHaveLength(1);
    expect(first.queue_pending[0]?.[4]).toEqual(['3']);
    const history = HistorySchema.parse(fx('history_full.json'));
    expect(Object.keys(history)).toHaveLength(13);
    const statuses = Object.values(history).map((h) => h.status?.status_str);
    expect(statuses.filter((s) => s === 'error')).toHaveLength(3);
    const misc = fx('misc_responses.json') as Record<string, { response: { body: unknown } }>;
    expect(HistorySchema.parse(misc.history_unknown_id?.response.body)).toEqual({});
    expect(Object.keys(HistorySchema.parse(misc.history_max_items_2?.response.body))).toHaveLength(2);
  });

  it('parses POST /prompt requests, answers and errors', () => {
    const errors = fx('prompt_errors.json') as {
      cases: { request: { body?: unknown }; response: { status: number; body: unknown } }[];
      valid_prompt_after_errors: { request: { body: unknown }; response: { body: unknown } };
    };
    for (const c of errors.cases) {
      if (c.response.status !== 400) continue;
      PromptErrorBodySchema.parse(c.response.body);
      QueuePromptBodySchema.parse(c.request.body);
    }
    const ok = errors.valid_prompt_after_errors;
    const body = QueuePromptBodySchema.parse(ok.request.body);
    expect(ApiPromptSchema.parse(body.prompt)['3']?.class_type).toBe('SaveImage');
    expect(QueuePromptResponseSchema.parse(ok.response.body).number).toBe(19);
  });

  it('parses upload answers', () => {
    const up = fx('upload_image.json') as { uploads: { response: { status: number; body: unknown } }[] };
    const names = up.uploads
      .filter((u) => u.response.status === 200)
      .map((u) => UploadResponseSchema.parse(u.response.body).name);
    expect(names).toContain('fixture_upload (1).png');
  });
});

describe('WebSocket text messages', () => {
  const messages = allMessages();

  it('parses every recorded text frame as a known message', () => {
    const texts = messages.filter((m) => m.kind === 'text');
    expect(texts.length).toBeGreaterThan(100);
    const types = new Set<string>();
    for (const m of texts) {
      const parsed = parseWsText(JSON.stringify(m.data));
      if (parsed.kind !== 'message') throw new Error(`unparsed: ${JSON.stringify(m.data)}`);
      types.add(parsed.message.type);
    }
    expect([...types].sort()).toEqual([
      'executed',
      'executing',
      'execution_cached',
      'execution_error',
      'execution_interrupted',
      'execution_start',
      'execution_success',
      'feature_flags',
      'progress_state',
      'status',
    ]);
  });

  it('keeps unknown and malformed messages apart', () => {
    expect(parseWsText('{"type":"crystools.monitor","data":{"cpu":1}}')).toEqual({
      kind: 'other',
      message: { type: 'crystools.monitor', data: { cpu: 1 } },
    });
    const bad = parseWsText('{"type":"executed","data":{"node":1}}');
    expect(bad.kind).toBe('other');
    expect(parseWsText('nope').kind).toBe('invalid');
    expect(parseWsText('[1]').kind).toBe('invalid');
    const p = parseWsText('{"type":"progress","data":{"value":3,"max":20,"prompt_id":"p1","node":"5"}}');
    expect(p.kind === 'message' && promptIdOf(p.message)).toBe('p1');
    const s = parseWsText('{"type":"executing","data":{"node":"5"}}');
    expect(s.kind === 'message' && promptIdOf(s.message)).toBeNull();
  });

  it('isLink matches ComfyUI is_link', () => {
    expect(isLink(['1', 0])).toBe(true);
    expect(isLink(['1', 0.5])).toBe(true);
    expect(isLink([1, 0])).toBe(false);
    expect(isLink(['1', '0'])).toBe(false);
    expect(isLink(['1', 0, 2])).toBe(false);
  });
});

describe('WebSocket binary frames', () => {
  it('encodes and decodes the recorded TEXT frame byte for byte', () => {
    const rec = allMessages().find((m) => m.kind === 'binary')?.data as {
      length: number;
      first8_hex: string;
      node_id: string;
      text: string;
    };
    const buf = encodeBinaryFrame({ event: 3, name: 'TEXT', nodeId: rec.node_id, text: rec.text });
    expect(buf.length).toBe(rec.length);
    expect(buf.subarray(0, 8).toString('hex')).toBe(rec.first8_hex);
    expect(decodeBinaryFrame(buf)).toEqual({
      event: 3,
      name: 'TEXT',
      nodeId: '2',
      text: 'width: 40, height: 30\n batch size: 2',
    });
    const ab = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length) as ArrayBuffer;
    expect(decodeBinaryFrame(ab)).toMatchObject({ nodeId: '2' });
    expect(decodeBinaryFrame(new Uint8Array(buf))).toMatchObject({ nodeId: '2' });
  });

  it('round-trips preview images', () => {
    const png = Buffer.from('89504e470d0a1a0a0000', 'hex');
    const p1 = encodeBinaryFrame({
      event: 1,
      name: 'PREVIEW_IMAGE',
      format: 2,
      mime: 'image/png',
      image: png,
    });
    expect(p1.subarray(0, 8).toString('hex')).toBe('0000000100000002');
    expect(decodeBinaryFrame(p1)).toEqual({
      event: 1,
      name: 'PREVIEW_IMAGE',
      format: 2,
      mime: 'image/png',
      image: png,
    });
    expect(
      decodeBinaryFrame(Buffer.concat([p1.subarray(0, 4), Buffer.from([0, 0, 0, 1]), png])),
    ).toMatchObject({
      mime: 'image/jpeg',
    });
    const metadata = {
      node_id: '7',
      prompt_id: 'p',
      display_node_id: '7',
      parent_node_id: null,
      real_node_id: '7',
    };
    const p4 = encodeBinaryFrame({
      event: 4,
      name: 'PREVIEW_IMAGE_WITH_METADATA',
      metadata,
      mime: 'image/jpeg',
      image: png,
    });
    const metaLen = p4.readUInt32BE(4);
    expect(JSON.parse(p4.subarray(8, 8 + metaLen).toString())).toEqual({
      ...metadata,
      image_type: 'image/jpeg',
    });
    expect(decodeBinaryFrame(p4)).toEqual({
      event: 4,
      name: 'PREVIEW_IMAGE_WITH_METADATA',
      metadata: { ...metadata, image_type: 'image/jpeg' },
      mime: 'image/jpeg',
      image: png,
    });
  });

  it('passes unknown types through and rejects truncated frames', () => {
    const odd = encodeBinaryFrame({ event: 9, name: 'UNKNOWN', payload: Buffer.from('abc') });
    expect(decodeBinaryFrame(odd)).toEqual({ event: 9, name: 'UNKNOWN', payload: Buffer.from('abc') });
    expect(decodeBinaryFrame(Buffer.from([0, 0, 0, 2, 1]))).toEqual({
      event: 2,
      name: 'UNENCODED_PREVIEW_IMAGE',
      payload: Buffer.from([1]),
    });
    expect(() => decodeBinaryFrame(Buffer.from([0, 0, 1]))).toThrow(BinaryFrameError);
    expect(() => decodeBinaryFrame(Buffer.from([0, 0, 0, 3, 0, 0, 0, 9, 65]))).toThrow(BinaryFrameError);
    expect(() => decodeBinaryFrame(Buffer.from([0, 0, 0, 4, 0, 0, 0, 2, 123, 125]))).not.toThrow();
    expect(() => decodeBinaryFrame(Buffer.from([0, 0, 0, 4, 0, 0, 0, 1, 123]))).toThrow(BinaryFrameError);
    expect(() => decodeBinaryFrame(Buffer.from([0, 0, 0, 1, 0]))).toThrow(BinaryFrameError);
  });
});
