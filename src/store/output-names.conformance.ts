/**
 * Output names on every backend (`JobStore.nameOutputs`): run from `store.conformance.ts`, so SQLite
 * and Redis both show that one participant's prefix counts on across jobs like one ComfyUI's
 * `get_save_image_path`, that a repeated claim names the same file, that concurrent jobs never get
 * the same number, and that the counters survive a reopen.
 */
import { expect, it } from 'vitest';
import type { JobStore, OutputNameClaim } from './types.js';

const c = (subfolder: string, prefix: string, counter: number, floor?: number): OutputNameClaim => ({
  subfolder,
  prefix,
  counter,
  ...(floor === undefined ? {} : { floor }),
});

export function outputNameConformance(current: () => JobStore, reopen: () => Promise<JobStore> | null): void {
  it('output names: one counter per (user, subfolder, prefix), continuing across jobs', async () => {
    const store = current();
    expect(await store.nameOutputs('alice', 'j1', [c('', 'bar', 1), c('', 'bar', 2)])).toEqual([1, 2]);
    expect(await store.nameOutputs('alice', 'j2', [c('', 'bar', 1)])).toEqual([3]);
    // Another prefix, another subfolder, another user: their own sequences.
    expect(await store.nameOutputs('alice', 'j2', [c('', 'foo', 1), c('video', 'bar', 1)])).toEqual([1, 1]);
    expect(await store.nameOutputs('bob', 'j3', [c('', 'bar', 1)])).toEqual([1]);
    // A claim made again (a repeated event, upload or report) keeps its number; several files
    // sharing one worker counter (VHS writes x_00001.mp4 and x_00001.png) share one number.
    expect(
      await store.nameOutputs('alice', 'j1', [c('', 'bar', 2), c('', 'bar', 1), c('', 'bar', 2)]),
    ).toEqual([2, 1, 2]);
    expect(await store.nameOutputs('alice', 'j1', [c('', 'bar', 3)])).toEqual([4]);
    expect(await store.nameOutputs('alice', 'j1', [])).toEqual([]);
    // Names are case- and character-exact, and unusual characters are only data.
    expect(await store.nameOutputs('alice', 'j4', [c('a"b', 'x\\y', 1), c('', 'Bar', 1)])).toEqual([1, 1]);
  });

  it('output names: a floor skips numbers files already use', async () => {
    const store = current();
    expect(await store.nameOutputs('alice', 'j1', [c('', 'bar', 1, 7)])).toEqual([8]);
    // A floor below the counter changes nothing.
    expect(await store.nameOutputs('alice', 'j2', [c('', 'bar', 1, 3)])).toEqual([9]);
    await expect(store.nameOutputs('alice', 'j3', [c('', 'bar', -1)])).rejects.toThrow();
    await expect(store.nameOutputs('alice', 'j3', [c('', 'bar', 1, 1.5)])).rejects.toThrow();
  });

  it('output names: concurrent jobs of one participant never share a number', async () => {
    const store = current();
    const jobs = Array.from({ length: 8 }, (_, i) => `job${i}`);
    const got = await Promise.all(
      jobs.map((id) => store.nameOutputs('alice', id, [c('', 'ComfyUI', 1), c('', 'ComfyUI', 2)])),
    );
    for (const pair of got) expect(pair[1]).toBe(pair[0]! + 1);
    expect(got.flat().sort((a, b) => a - b)).toEqual(Array.from({ length: 16 }, (_, i) => i + 1));
  });

  it('output names: counters and claims survive a reopen', async () => {
    await current().nameOutputs('alice', 'j1', [c('v', 'clip', 1)]);
    const again = await reopen();
    if (!again) return;
    expect(await again.nameOutputs('alice', 'j1', [c('v', 'clip', 1)])).toEqual([1]);
    expect(await again.nameOutputs('alice', 'j2', [c('v', 'clip', 1)])).toEqual([2]);
  });
}
