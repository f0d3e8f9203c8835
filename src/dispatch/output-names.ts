/**
 * The names participants see for their outputs: ComfyUI's own. On a worker, ComfyUI saves under
 * the job's namespace (`<user>/<job>/<own subfolder>/bar_00001_.png`, so jobs on different GPUs
 * never collide there), and every job's counter starts at 1. Here each output saved under a
 * counted name (`<prefix>_<counter>…`) is renamed into the participant's own sequence: subfolder
 * as the workflow asked, counter continuing per participant, subfolder and prefix
 * (`bar_00001_.png`, `bar_00002_.png`, …), numbered atomically by the store
 * ({@link JobStore.nameOutputs}) so two jobs never get the same name. Temp previews and files not
 * named with a counter keep the job's own folder (`<job>/<subfolder>/<name>`).
 *
 * The worker protocol always carries the job's own names (as ComfyUI on the worker gave them,
 * or as uploaded: `<job>/<own subfolder>/<name>`); the control plane maps them in exactly three
 * places with this module: the relayed `executed` event, the upload of the file, and the
 * completion report. Each maps a name the same way, because the store remembers every claim.
 */
import type { FileStore } from '../files/file-store.js';
import { userFileKey } from '../files/safe-path.js';
import type { JobOutput, JobStore, OutputNameClaim } from '../store/types.js';
import { outputClaimKey } from '../store/output-names.js';
import { jobSegment } from '../worker/agent/files.js';

export interface OutputLocation {
  type: string;
  subfolder: string;
  filename: string;
}

export interface FacingName {
  subfolder: string;
  filename: string;
}

/** ComfyUI's counted names: `bar_00001_.png`, `clip_00001_.mp4`, VHS `x_00001.mp4`, `x_00001-audio.mp4`. */
const COUNTED = /^(.+)_(\d{5,})((?:[._-].*)?)$/s;

export function parseCountedName(filename: string): { prefix: string; counter: number; rest: string } | null {
  const m = COUNTED.exec(filename);
  if (!m) return null;
  const counter = Number(m[2]);
  if (!Number.isSafeInteger(counter)) return null;
  return { prefix: m[1]!, counter, rest: m[3] ?? '' };
}

/** `{counter:05}`, as ComfyUI formats it. */
export function countedName(prefix: string, n: number, rest: string): string {
  return `${prefix}_${String(n).padStart(5, '0')}${rest}`;
}

/**
 * The participant's own subfolder of an output: ComfyUI's subfolder on the worker
 * (`<user>/<job>/<own>`) or the uploaded one (`<job>/<own>`); any other subfolder (a node that
 * saved outside the namespace) is taken as it is.
 */
export function ownSubfolder(user: string, jobId: string, subfolder: string): string {
  const s = subfolder.replace(/\\/g, '/').replace(/^\/+|\/+$/g, '');
  for (const root of [`${user}/${jobSegment(jobId)}`, jobSegment(jobId)]) {
    if (s === root) return '';
    if (s.startsWith(`${root}/`)) return s.slice(root.length + 1);
  }
  return s;
}

/** Where a file that keeps the job's own name is stored: `<job>/<own subfolder>`. */
function jobFolder(jobId: string, own: string): string {
  return [jobSegment(jobId), own].filter((s) => s !== '').join('/');
}

/** Jobs whose names are remembered per store; the oldest are forgotten first. */
const KNOWN_JOBS = 2000;

/**
 * Numbers the store already gave, per store (so every namer of one store shares them): job id →
 * claim key → number. The store never changes a number it gave, so an answer is good for as long
 * as the process lives. Each file is named three times on the way to its owner (its upload, the
 * relayed `executed`, the completion report); only the first needs the store and the folder scan
 * ({@link OutputNamer.floor}, which grows with the participant's outputs), the others are on the
 * round trip and take no I/O at all.
 */
const knownByStore = new WeakMap<object, Map<string, Map<string, number>>>();

/**
 * A job's naming under way, per store: a job's upload and its relayed `executed` arrive together
 * (outputs announced early), and the second waits for the first instead of scanning the folder
 * and asking the store again.
 */
const namingByStore = new WeakMap<object, Map<string, Promise<unknown>>>();

/**
 * How long a folder's scanned floor ({@link OutputNamer.floor}) stands in for a new scan. The scan
 * lists the participant's whole output folder (1.1 ms of every job's round trip at a few hundred
 * outputs, on the path of both its relayed `executed` and its upload), and once the store has
 * numbered past the folder, only files put there another way can raise the floor again: a
 * participant's own upload into `output` (which drops the user's floors at once, see
 * {@link outputFolderChanged}), or one on another process of a cluster (within this long).
 */
export const FLOOR_TTL_MS = 60_000;

/** Floors cached per users' file store: `user\0subfolder\0prefix` → highest counter seen, when scanned. */
const floorsByFiles = new WeakMap<object, Map<string, { n: number; at: number }>>();
const MAX_FLOORS = 10_000;
/**
 * Per users' file store, how often each user's output folders were said to change: a scan that
 * began before such a change is used once but not kept (it may not have seen the new file).
 */
const changesByFiles = new WeakMap<object, Map<string, number>>();

/**
 * Files came into `user`'s output folders another way than a job's output (an upload with
 * `type=output`): the next naming scans the folder again instead of trusting what it saw.
 */
export function outputFolderChanged(files: object, user: string): void {
  let changes = changesByFiles.get(files);
  if (!changes) changesByFiles.set(files, (changes = new Map()));
  changes.set(user, (changes.get(user) ?? 0) + 1);
  const floors = floorsByFiles.get(files);
  if (!floors) return;
  for (const key of floors.keys()) if (key.startsWith(`${user}\0`)) floors.delete(key);
}

export class OutputNamer {
  private readonly known: Map<string, Map<string, number>>;

  constructor(
    private readonly store: Pick<JobStore, 'nameOutputs'>,
    private readonly files?: Pick<FileStore, 'list' | 'fileNames'>,
    private readonly clock: () => number = Date.now,
  ) {
    let known = knownByStore.get(store);
    if (!known) knownByStore.set(store, (known = new Map()));
    this.known = known;
    let naming = namingByStore.get(store);
    if (!naming) namingByStore.set(store, (naming = new Map()));
    this.naming = naming;
    if (files) {
      let floors = floorsByFiles.get(files);
      if (!floors) floorsByFiles.set(files, (floors = new Map()));
      this.floors = floors;
    }
  }

  private readonly floors: Map<string, { n: number; at: number }> | undefined;

  private readonly naming: Map<string, Promise<unknown>>;

  private remember(jobId: string, key: string, n: number): void {
    let job = this.known.get(jobId);
    if (!job) {
      if (this.known.size >= KNOWN_JOBS) this.known.delete(this.known.keys().next().value!);
      this.known.set(jobId, (job = new Map()));
    }
    job.set(key, n);
  }

  /**
   * The highest counter files in `<user>/output/<subfolder>` already use for `prefix` (ComfyUI
   * looks at the folder too): a store restored without its counters, or files put there some
   * other way, are never overwritten. A scan stands for {@link FLOOR_TTL_MS}.
   */
  private async floor(user: string, subfolder: string, prefix: string): Promise<number> {
    if (!this.files || !this.floors) return 0;
    const key = `${user}\0${subfolder}\0${prefix}`;
    const cached = this.floors.get(key);
    const now = this.clock();
    if (cached && now - cached.at < FLOOR_TTL_MS) return cached.n;
    const changes = changesByFiles.get(this.files);
    const generation = changes?.get(user) ?? 0;
    const dir = `${userFileKey(user, 'output', subfolder)}/`;
    // Only the folder's own files count; the names alone will do (no walk below it, no stats).
    const names = this.files.fileNames
      ? await this.files.fileNames(dir)
      : (await this.files.list(dir)).map((f) => f.key.slice(dir.length)).filter((n) => !n.includes('/'));
    let max = 0;
    for (const name of names) {
      const p = parseCountedName(name);
      if (p && p.prefix === prefix) max = Math.max(max, p.counter);
    }
    if ((changesByFiles.get(this.files)?.get(user) ?? 0) === generation) {
      if (this.floors.size >= MAX_FLOORS) this.floors.delete(this.floors.keys().next().value!);
      this.floors.set(key, { n: max, at: now });
    }
    return max;
  }

  /** The participant-facing names of a job's outputs, in order (see the module comment). */
  async name(user: string, jobId: string, items: readonly OutputLocation[]): Promise<FacingName[]> {
    // One naming of a job at a time: the next one finds the numbers the previous one got.
    const before = this.naming.get(jobId);
    const mine = (before ? before.catch(() => undefined) : Promise.resolve()).then(() =>
      this.nameNow(user, jobId, items),
    );
    this.naming.set(jobId, mine);
    try {
      return await mine;
    } finally {
      if (this.naming.get(jobId) === mine) this.naming.delete(jobId);
    }
  }

  private async nameNow(
    user: string,
    jobId: string,
    items: readonly OutputLocation[],
  ): Promise<FacingName[]> {
    const out: (FacingName | null)[] = [];
    const claims: OutputNameClaim[] = [];
    const claimed: { index: number; rest: string }[] = [];
    const floors = new Map<string, Promise<number>>();
    const known = this.known.get(jobId);
    for (const item of items) {
      const own = ownSubfolder(user, jobId, item.subfolder);
      const p = item.type === 'output' ? parseCountedName(item.filename) : null;
      if (!p) {
        out.push({ subfolder: jobFolder(jobId, own), filename: item.filename });
        continue;
      }
      const n = known?.get(outputClaimKey({ subfolder: own, prefix: p.prefix, counter: p.counter }));
      if (n !== undefined) {
        out.push({ subfolder: own, filename: countedName(p.prefix, n, p.rest) });
        continue;
      }
      const group = JSON.stringify([own, p.prefix]);
      let floor = floors.get(group);
      if (!floor) floors.set(group, (floor = this.floor(user, own, p.prefix)));
      claims.push({ subfolder: own, prefix: p.prefix, counter: p.counter, floor: await floor });
      claimed.push({ index: out.length, rest: p.rest });
      out.push(null);
    }
    if (claims.length > 0) {
      const numbers = await this.store.nameOutputs(user, jobId, claims);
      claimed.forEach(({ index, rest }, i) => {
        const c = claims[i]!;
        this.remember(jobId, outputClaimKey(c), numbers[i]!);
        out[index] = { subfolder: c.subfolder, filename: countedName(c.prefix, numbers[i]!, rest) };
      });
    }
    return out as FacingName[];
  }

  /**
   * A node's `ui` output (an `executed` event's `output`) with every file entry renamed; every
   * other key and entry stays as it is, in order. VHS's `workflow` (the name of the PNG beside the
   * video) is renamed with it; `fullpath` (the worker's own disk path) is dropped.
   */
  async nameUi(
    user: string,
    jobId: string,
    output: Record<string, unknown>,
  ): Promise<Record<string, unknown>> {
    const refs: { key: string; i: number; field: 'filename' | 'workflow' }[] = [];
    const locs: OutputLocation[] = [];
    for (const [key, items] of Object.entries(output)) {
      if (!Array.isArray(items)) continue;
      items.forEach((item: unknown, i) => {
        if (!isFileItem(item) || item.type === 'input') return;
        const loc = location(item);
        refs.push({ key, i, field: 'filename' });
        locs.push(loc);
        if (typeof item.workflow === 'string' && item.workflow !== '') {
          refs.push({ key, i, field: 'workflow' });
          locs.push({ ...loc, filename: item.workflow });
        }
      });
    }
    const names = await this.name(user, jobId, locs);
    const result: Record<string, unknown> = {};
    for (const [key, items] of Object.entries(output))
      result[key] = Array.isArray(items) ? items.map((x: unknown) => inputSeenByUser(user, x)) : items;
    refs.forEach((ref, n) => {
      const item = (result[ref.key] as Record<string, unknown>[])[ref.i]!;
      const name = names[n]!;
      if (ref.field === 'workflow') item.workflow = name.filename;
      else {
        item.filename = name.filename;
        item.subfolder = name.subfolder;
        delete item.fullpath;
      }
    });
    return result;
  }

  /** A completion report's outputs (job's own names) under the participant-facing names. */
  async nameOutputs(user: string, jobId: string, outputs: readonly JobOutput[]): Promise<JobOutput[]> {
    const refs: { i: number; field: 'filename' | 'workflow' }[] = [];
    const locs: OutputLocation[] = [];
    outputs.forEach((o, i) => {
      if (o.value !== undefined) return;
      refs.push({ i, field: 'filename' });
      locs.push(o);
      const wf = o.extra?.workflow;
      if (typeof wf === 'string' && wf !== '') {
        refs.push({ i, field: 'workflow' });
        locs.push({ ...o, filename: wf });
      }
    });
    const names = await this.name(user, jobId, locs);
    const result = outputs.map((o) =>
      o.value !== undefined
        ? { ...o, value: inputSeenByUser(user, o.value) }
        : { ...o, ...(o.extra ? { extra: { ...o.extra } } : {}) },
    );
    refs.forEach((ref, n) => {
      const o = result[ref.i]!;
      const name = names[n]!;
      if (ref.field === 'workflow') o.extra!.workflow = name.filename;
      else {
        o.filename = name.filename;
        o.subfolder = name.subfolder;
        if (o.extra) delete o.extra.fullpath;
      }
    });
    return result;
  }
}

/**
 * A copy of a ui entry; one naming a file in ComfyUI's input folder (`type: input`) gets the
 * subfolder the participant sees: the agent puts their inputs under `<user>/…` on the worker.
 */
function inputSeenByUser(user: string, x: unknown): unknown {
  if (!isFileItem(x)) return x;
  if (x.type !== 'input' || typeof x.subfolder !== 'string') return { ...x };
  const s = x.subfolder.replace(/\\/g, '/');
  return { ...x, subfolder: s === user ? '' : s.startsWith(`${user}/`) ? s.slice(user.length + 1) : s };
}

function isFileItem(x: unknown): x is Record<string, unknown> & { filename: string } {
  return (
    typeof x === 'object' &&
    x !== null &&
    !Array.isArray(x) &&
    typeof (x as { filename?: unknown }).filename === 'string'
  );
}

function location(item: Record<string, unknown> & { filename: string }): OutputLocation {
  return {
    type: typeof item.type === 'string' ? item.type : 'output',
    subfolder: typeof item.subfolder === 'string' ? item.subfolder : '',
    filename: item.filename,
  };
}
