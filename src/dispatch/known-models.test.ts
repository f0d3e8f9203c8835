import { describe, expect, it } from 'vitest';
import type { ObjectInfo } from '../comfy/protocol.js';
import { objectInfoOfAllWorkers, type KnownHolder } from './known-models.js';

const info = (ckpts: string[], newStyle = false) =>
  ({
    CheckpointLoaderSimple: {
      input: {
        required: { ckpt_name: newStyle ? ['COMBO', { options: ckpts }] : [ckpts, { tooltip: 't' }] },
      },
    },
    EmptyImage: { input: { required: { width: ['INT', {}] } } },
  }) as unknown as ObjectInfo;
const holder = (hash: string, objectInfo: ObjectInfo): KnownHolder => ({ hash, models: {}, objectInfo });

describe('objectInfoOfAllWorkers', () => {
  it('is the base itself with one worker', () => {
    const base = info(['a.safetensors']);
    expect(objectInfoOfAllWorkers(base, [holder('1', base)])).toBe(base);
  });

  it("lists every worker's files in each combo, old and new style, and leaves the rest shared", () => {
    const base = info(['a.safetensors']);
    const merged = objectInfoOfAllWorkers(base, [
      holder('1', base),
      holder('2', info(['b.safetensors'], true)),
    ]);
    expect(merged.CheckpointLoaderSimple!.input.required!.ckpt_name).toEqual([
      ['a.safetensors', 'b.safetensors'],
      { tooltip: 't' },
    ]);
    expect(merged.EmptyImage).toBe(base.EmptyImage);
    expect(base.CheckpointLoaderSimple!.input.required!.ckpt_name![0]).toEqual(['a.safetensors']);
    const newBase = info(['b.safetensors'], true);
    const merged2 = objectInfoOfAllWorkers(newBase, [holder('3', newBase), holder('4', base)]);
    expect(merged2.CheckpointLoaderSimple!.input.required!.ckpt_name).toEqual([
      'COMBO',
      { options: ['b.safetensors', 'a.safetensors'] },
    ]);
  });
});
