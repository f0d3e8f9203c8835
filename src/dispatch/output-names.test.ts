import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LocalFileStore } from '../files/local-file-store.js';
import { CONFORMANCE_DEFAULTS } from '../store/store.conformance.js';
import { openSqliteStore, type SqliteStore } from '../store/sqlite/sqlite-store.js';
import type { JobOutput } from '../store/types.js';
import {
  FLOOR_TTL_MS,
  OutputNamer,
  countedName,
  outputFolderChanged,
  ownSubfolder,
  parseCountedName,
} from './output-names.js';

const VHS = JSON.parse(
  readFileSync(
    new URL('../../test/fixtures/custom-node-outputs/vhs_video_combine.json', import.meta.url),
    'utf8',
  ),
) as { executed: { data: { output: Record<string, unknown> } } };

let dir: string;
let store: SqliteStore;
let files: LocalFileStore;
let namer: OutputNamer;

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'output-names-'));
  store = await openSqliteStore({ path: ':memory:', defaults: CONFORMANCE_DEFAULTS });
  files = new LocalFileStore(dir);
  namer = new OutputNamer(store, files);
});

afterEach(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

const out = (filename: string, subfolder: string, type: 'output' | 'temp' = 'output') => ({
  type,
  subfolder,
  filename,
});

describe('ComfyUI names', () => {
  it('reads and writes the counted names of ComfyUI and of custom nodes', () => {
    expect(parseCountedName('ComfyUI_00001_.png')).toEqual({ prefix: 'ComfyUI', counter: 1, rest: '_.png' });
    expect(parseCountedName('x_0_00012_.png')).toEqual({ prefix: 'x_0', counter: 12, rest: '_.png' });
    expect(parseCountedName('AnimateDiff_00003.mp4')).toEqual({
      prefix: 'AnimateDiff',
      counter: 3,
      rest: '.mp4',
    });
    expect(parseCountedName('AnimateDiff_00003-audio.mp4')).toMatchObject({ counter: 3, rest: '-audio.mp4' });
    expect(parseCountedName('clip_123456_.mp4')).toMatchObject({ prefix: 'clip', counter: 123456 });
    for (const name of ['photo.png', 'a_0001_.png', '_00001_.png', 'x_00001x.png'])
      expect(parseCountedName(name), name).toBeNull();
    expect(countedName('bar', 3, '_.png')).toBe('bar_00003_.png');
    expect(countedName('bar', 123456, '_.png')).toBe('bar_123456_.png');
  });

  it("finds the participant's own subfolder in the worker's and the uploaded form", () => {
    expect(ownSubfolder('alice', 'j1', 'alice/j1')).toBe('');
    expect(ownSubfolder('alice', 'j1', 'alice/j1/video')).toBe('video');
    expect(ownSubfolder('alice', 'j1', 'j1/video/a')).toBe('video/a');
    expect(ownSubfolder('alice', 'j1', 'j1')).toBe('');
    expect(ownSubfolder('alice', 'j1', 'elsewhere')).toBe('elsewhere');
  });
});

describe('OutputNamer', () => {
  it("numbers each participant's prefix on across jobs, the same from event, upload and report", async () => {
    const a = await namer.name('alice', 'j1', [
      out('bar_00001_.png', 'alice/j1'),
      out('bar_00002_.png', 'alice/j1'),
      out('clip_00001_.mp4', 'alice/j1/video'),
    ]);
    expect(a).toEqual([
      { subfolder: '', filename: 'bar_00001_.png' },
      { subfolder: '', filename: 'bar_00002_.png' },
      { subfolder: 'video', filename: 'clip_00001_.mp4' },
    ]);
    // Another job (another GPU): its ComfyUI starts at 00001 again; the participant's does not.
    expect(await namer.name('alice', 'j2', [out('bar_00001_.png', 'alice/j2')])).toEqual([
      { subfolder: '', filename: 'bar_00003_.png' },
    ]);
    // The upload (`<job>/<own>`) and the report name j1's files exactly as its event did.
    expect(
      await namer.name('alice', 'j1', [out('bar_00002_.png', 'j1'), out('clip_00001_.mp4', 'j1/video')]),
    ).toEqual([a[1], a[2]]);
    // Another participant has a sequence of their own.
    expect(await namer.name('bob', 'j3', [out('bar_00001_.png', 'bob/j3')])).toEqual([
      { subfolder: '', filename: 'bar_00001_.png' },
    ]);
  });

  it('scans the folder and asks the store once per file: the event and report after the upload take no I/O', async () => {
    for (let i = 1; i <= 5; i++) await files.write(`alice/output/bar_0000${i}_.png`, Buffer.from('x'));
    let lists = 0;
    const counted = { list: (prefix: string) => (lists++, files.list(prefix)) };
    let asks = 0;
    const counting = {
      nameOutputs: (...a: Parameters<SqliteStore['nameOutputs']>) => (asks++, store.nameOutputs(...a)),
    };
    // Namers of the same store share what it answered (the upload route and the reports have one each).
    const upload = new OutputNamer(store, counted);
    const reports = new OutputNamer(store, counted);
    const viaCounting = new OutputNamer(counting, counted);
    expect(await upload.name('alice', 'j1', [out('bar_00001_.png', 'j1')])).toEqual([
      { subfolder: '', filename: 'bar_00006_.png' },
    ]);
    expect(lists).toBe(1);
    expect(
      await reports.nameUi('alice', 'j1', {
        images: [{ filename: 'bar_00001_.png', subfolder: 'alice/j1', type: 'output' }],
      }),
    ).toEqual({ images: [{ filename: 'bar_00006_.png', subfolder: '', type: 'output' }] });
    const report: JobOutput = {
      nodeId: '9',
      filename: 'bar_00001_.png',
      subfolder: 'j1',
      type: 'output',
      kind: 'images',
      size: 1,
      sha256: 'a'.repeat(64),
    };
    expect((await reports.nameOutputs('alice', 'j1', [report]))[0]).toMatchObject({
      filename: 'bar_00006_.png',
      subfolder: '',
    });
    expect(lists).toBe(1);
    // A namer of another store knows nothing of these answers: it asks its own store (the
    // folder's floor, scanned a moment ago in the same file store, stands).
    await viaCounting.name('alice', 'j1', [out('bar_00001_.png', 'j1')]);
    expect(asks).toBe(1);
    expect(lists).toBe(1);
  });

  it("a folder's scan stands for the next jobs for a while; a hand-placed output, or time, makes the next one scan again", async () => {
    for (let i = 1; i <= 3; i++) await files.write(`alice/output/bar_0000${i}_.png`, Buffer.from('x'));
    let lists = 0;
    const counted = {
      list: (prefix: string) => (lists++, files.list(prefix)),
      fileNames: (dir: string) => (lists++, files.fileNames(dir)),
    };
    let now = 1_000_000;
    const namer = new OutputNamer(store, counted, () => now);
    const name = async (job: string) =>
      (await namer.name('alice', job, [out('bar_00001_.png', job)]))[0]!.filename;
    expect(await name('j1')).toBe('bar_00004_.png');
    expect(await name('j2')).toBe('bar_00005_.png');
    expect(lists).toBe(1);

    // The participant uploads a counted name into `output` (the upload route says so): the next
    // job continues after it, as ComfyUI would, instead of ever writing over it.
    await files.write('alice/output/bar_00042_.png', Buffer.from('mine'));
    outputFolderChanged(counted, 'alice');
    expect(await name('j3')).toBe('bar_00043_.png');
    expect(lists).toBe(2);

    // Put there some other way (another process): seen once the scan is older than FLOOR_TTL_MS.
    await files.write('alice/output/bar_00099_.png', Buffer.from('elsewhere'));
    expect(await name('j4')).toBe('bar_00044_.png');
    now += FLOOR_TTL_MS;
    expect(await name('j5')).toBe('bar_00100_.png');
    expect(lists).toBe(3);
    expect(readFileSync(join(dir, 'alice/output/bar_00042_.png'), 'utf8')).toBe('mine');
  });

  it('a scan that was under way when an upload changed the folder is used once, not kept', async () => {
    let release: () => void = () => undefined;
    let slow = true;
    const counted = {
      list: (prefix: string) => files.list(prefix),
      fileNames: async (d: string) => {
        const names = await files.fileNames(d);
        if (slow) await new Promise<void>((r) => (release = r));
        return names;
      },
    };
    const namer = new OutputNamer(store, counted);
    const naming = namer.name('alice', 'j1', [out('bar_00001_.png', 'j1')]);
    await new Promise((r) => setTimeout(r, 20));
    // The participant uploads bar_00042_ while that scan (which saw an empty folder) is on its way.
    await files.write('alice/output/bar_00042_.png', Buffer.from('mine'));
    outputFolderChanged(counted, 'alice');
    slow = false;
    release();
    expect((await naming)[0]!.filename).toBe('bar_00001_.png');
    expect((await namer.name('alice', 'j2', [out('bar_00001_.png', 'j2')]))[0]!.filename).toBe(
      'bar_00043_.png',
    );
  });

  it('never reuses a number a file in the folder already has', async () => {
    await files.write('alice/output/video/clip_00007_.mp4', Buffer.from('x'));
    await files.write('alice/output/video/deeper/clip_00050_.mp4', Buffer.from('x'));
    expect(await namer.name('alice', 'j1', [out('clip_00001_.mp4', 'alice/j1/video')])).toEqual([
      { subfolder: 'video', filename: 'clip_00008_.mp4' },
    ]);
  });

  it('keeps temp previews and uncounted names in the job folder', async () => {
    expect(
      await namer.name('alice', 'j1', [
        out('ComfyUI_temp_abcde_00001_.png', '', 'temp'),
        out('photo.png', 'alice/j1/sub'),
      ]),
    ).toEqual([
      { subfolder: 'j1', filename: 'ComfyUI_temp_abcde_00001_.png' },
      { subfolder: 'j1/sub', filename: 'photo.png' },
    ]);
  });

  it('renames the files of a ui output and keeps every other key and entry, in order', async () => {
    const ui = {
      images: [{ filename: 'clip_00001_.mp4', subfolder: 'alice/j1/video', type: 'output' }],
      animated: [true],
      text: ['hello'],
      inputs: [{ filename: 'photo.png', subfolder: 'alice/sub', type: 'input' }],
    };
    await namer.name('alice', 'j0', [out('clip_00001_.mp4', 'alice/j0/video')]);
    const named = await namer.nameUi('alice', 'j1', ui);
    expect(JSON.stringify(named)).toBe(
      JSON.stringify({
        images: [{ filename: 'clip_00002_.mp4', subfolder: 'video', type: 'output' }],
        animated: [true],
        text: ['hello'],
        // A file of the participant's inputs, where they see it (the worker keeps it in `alice/`).
        inputs: [{ filename: 'photo.png', subfolder: 'sub', type: 'input' }],
      }),
    );
    expect(ui.images[0]!.filename).toBe('clip_00001_.mp4'); // the input is left alone
  });

  it("renames a recorded VHS_VideoCombine entry's video and workflow PNG together, without the worker's path", async () => {
    const recorded = structuredClone(VHS.executed.data.output) as { gifs: Record<string, unknown>[] };
    recorded.gifs[0]!.subfolder = 'alice/j1';
    await namer.name('alice', 'j0', [out('AnimateDiff_00001.mp4', 'alice/j0')]);
    const named = (await namer.nameUi('alice', 'j1', recorded)) as typeof recorded;
    expect(named.gifs).toEqual([
      {
        filename: 'AnimateDiff_00002.mp4',
        subfolder: '',
        type: 'output',
        format: 'video/h264-mp4',
        frame_rate: 8,
        workflow: 'AnimateDiff_00002.png',
      },
    ]);
    // The completion report names them the same way.
    const reported: JobOutput[] = [
      {
        nodeId: '12',
        filename: 'AnimateDiff_00001.mp4',
        subfolder: 'j1',
        type: 'output',
        kind: 'gifs',
        extra: { format: 'video/h264-mp4', frame_rate: 8, workflow: 'AnimateDiff_00001.png', fullpath: '/x' },
      },
      { nodeId: '12', filename: '', subfolder: '', type: 'output', kind: 'animated', value: true },
    ];
    expect(await namer.nameOutputs('alice', 'j1', reported)).toEqual([
      {
        ...reported[0],
        filename: 'AnimateDiff_00002.mp4',
        subfolder: '',
        extra: { format: 'video/h264-mp4', frame_rate: 8, workflow: 'AnimateDiff_00002.png' },
      },
      reported[1],
    ]);
  });
});

describe('one job named twice at once (its upload and its relayed executed)', () => {
  it('the second waits for the first: one folder scan, one store claim, the same name', async () => {
    let claims = 0;
    let scans = 0;
    const counting = new OutputNamer(
      {
        nameOutputs: (...a: Parameters<SqliteStore['nameOutputs']>) => {
          claims += 1;
          return store.nameOutputs(...a);
        },
      },
      {
        list: (p) => files.list(p),
        fileNames: (p) => {
          scans += 1;
          return files.fileNames(p);
        },
      },
    );
    const [a, b] = await Promise.all([
      counting.name('alice', 'job-twice', [out('ci_00001_.png', 'alice/job-twice')]),
      counting.nameUi('alice', 'job-twice', { images: [out('ci_00001_.png', 'alice/job-twice')] }),
    ]);
    expect(b).toEqual({ images: [{ ...a[0], type: 'output' }] });
    expect(claims).toBe(1);
    expect(scans).toBe(1);
  });
});
