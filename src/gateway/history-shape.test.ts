import { describe, expect, it } from 'vitest';
import { recordedVhsOutputs } from '../../test/support/comfyui-standin/media-nodes.js';
import type { Job, JobOutput } from '../store/types.js';
import { historyEntry, historyOutputs, jobItem } from './history-shape.js';

const T0 = 1_700_000_000_000;

function job(outputs: JobOutput[]): Job {
  return {
    id: 'j1',
    seq: 7,
    user: 'alice',
    status: 'completed',
    priority: 'normal',
    front: 0,
    prompt: {},
    models: [],
    metadata: {},
    attempts: 1,
    skips: 0,
    workerId: null,
    leaseExpiresAt: null,
    createdAt: T0,
    startedAt: T0 + 1,
    finishedAt: T0 + 2,
    error: null,
    outputs,
  };
}

const file = (
  nodeId: string,
  kind: string,
  filename: string,
  subfolder = '',
  extra?: Record<string, unknown>,
) => ({ nodeId, kind, filename, subfolder, type: 'output', ...(extra ? { extra } : {}) }) as JobOutput;
const value = (nodeId: string, kind: string, v: unknown): JobOutput => ({
  nodeId,
  kind,
  filename: '',
  subfolder: '',
  type: 'output',
  value: v,
});

describe('history outputs', () => {
  // What ComfyUI 0.3.64 answers for EmptyImage → CreateVideo → SaveVideo, SaveAnimatedWEBP and
  // PreviewAny (checked against the real server), and a VHS_VideoCombine entry.
  const outputs = [
    value('7', 'text', '64'),
    file('3', 'images', 'clip_00001_.mp4', 'video'),
    value('3', 'animated', true),
    file('4', 'images', 'anim_00001_.webp'),
    value('4', 'animated', true),
    file('12', 'gifs', 'AnimateDiff_00001.mp4', '', {
      format: 'video/h264-mp4',
      frame_rate: 8,
      workflow: 'AnimateDiff_00001.png',
    }),
  ];

  it('rebuilds every node output as ComfyUI reported it: keys, entries and fields in order', () => {
    expect(JSON.stringify(historyOutputs(job(outputs)))).toBe(
      JSON.stringify({
        '7': { text: ['64'] },
        '3': {
          images: [{ filename: 'clip_00001_.mp4', subfolder: 'video', type: 'output' }],
          animated: [true],
        },
        '4': { images: [{ filename: 'anim_00001_.webp', subfolder: '', type: 'output' }], animated: [true] },
        // As recorded from VHS_VideoCombine (test/fixtures/custom-node-outputs).
        '12': recordedVhsOutputs()['12'],
      }),
    );
    // A node with only a text output is still listed with its meta. (Node ids are integer-like
    // keys, which every JavaScript object, and so every JSON a JS client parses, orders by value.)
    expect(Object.keys(historyEntry(job(outputs)).meta)).toEqual(['3', '4', '7', '12']);
  });

  it('/api/jobs counts and previews files only; its detail carries the whole outputs', () => {
    const item = jobItem(job(outputs), true);
    expect(item.outputs_count).toBe(3);
    expect(item.preview_output).toMatchObject({ filename: 'clip_00001_.mp4', nodeId: '3' });
    expect(item.outputs).toEqual(historyOutputs(job(outputs)));
  });
});
