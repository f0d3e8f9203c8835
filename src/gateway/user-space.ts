import type { Readable } from 'node:stream';
import { AppError } from '../errors.js';
import type { FileStat, FileStore } from '../files/file-store.js';
import { assertNoNameClash } from '../files/name-clash.js';
import { safeRelativePath, userFileKey } from '../files/safe-path.js';
import type { BlobStore } from '../store/types.js';
import { parseJsonBounded } from '../http/json-depth.js';
import { KeyedLock } from './lock.js';
import type { TemplateFile, TemplateSource } from './templates.js';
import type { WorkshopTemplates } from '../templates/workshop-templates.js';

export const SETTINGS_FILE = 'comfy.settings.json';
const WORKFLOWS = 'workflows';
const STATE_NS = 'gateway.user';

/** What we remember about a participant besides their files (first visit, default workflow). */
export interface UserState {
  seededAt: number;
  /** `workflows/<name>` copied from DEFAULT_WORKFLOW at the first visit, or null. */
  defaultWorkflow: string | null;
  defaultWorkflowOpened: boolean;
}

/** One entry of a userdata listing: the user's own file, or a shared template shown in its place. */
export interface UserdataEntry {
  /** Relative to the user's userdata root. */
  path: string;
  size: number;
  mtimeMs: number;
  ctimeMs: number;
  template: boolean;
}

export async function readAll(stream: Readable, limit = Number.POSITIVE_INFINITY): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream) {
    const b = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array);
    size += b.length;
    if (size > limit) {
      stream.destroy();
      throw new AppError('PAYLOAD_TOO_LARGE');
    }
    chunks.push(b);
  }
  return Buffer.concat(chunks);
}

/**
 * A participant's ComfyUI user directory (settings, workflows, any userdata file the frontend
 * writes), kept in the FileStore `userdata` area, with the shared templates from TEMPLATES_DIR
 * overlaid read-only under `workflows/`. A user's own file always wins over a template of the same
 * path, which is how "saving a changed template saves your own copy" works.
 */
export class UserSpace {
  private readonly lock = new KeyedLock();

  constructor(
    private readonly files: FileStore,
    private readonly blobs: BlobStore,
    readonly templates: TemplateSource,
    private readonly clock: () => number = Date.now,
    /** SETTINGS_LIMIT: the largest settings file, in bytes. */
    readonly settingsLimit = 1024 * 1024,
    /** The dashboard's workshop templates: the one marked default wins over DEFAULT_WORKFLOW. */
    private readonly workshop: WorkshopTemplates | null = null,
  ) {}

  /** Normalises a userdata path from a URL (ComfyUI unquotes `%` a second time) and checks it. */
  static relPath(raw: string): string {
    return safeRelativePath(raw);
  }

  key(user: string, rel: string): string {
    return userFileKey(user, 'userdata', rel);
  }

  private templateRel(rel: string): string | null {
    return rel.startsWith(`${WORKFLOWS}/`) ? rel.slice(WORKFLOWS.length + 1) : null;
  }

  /** Own file or template at `rel`, or null. */
  async stat(user: string, rel: string): Promise<UserdataEntry | null> {
    const own = await this.files.stat(this.key(user, rel));
    if (own)
      return { path: rel, size: own.size, mtimeMs: own.mtimeMs, ctimeMs: own.mtimeMs, template: false };
    const t = this.templateRel(rel);
    if (t === null) return null;
    const tf = await this.templates.find(t);
    return tf ? fromTemplate(tf) : null;
  }

  /** The bytes of the own file, else the template; null when neither exists. */
  async read(user: string, rel: string): Promise<{ body: Readable | Buffer; entry: UserdataEntry } | null> {
    const entry = await this.stat(user, rel);
    if (!entry) return null;
    if (!entry.template) return { body: await this.files.read(this.key(user, rel)), entry };
    const body = await this.templates.read(this.templateRel(rel)!);
    return body ? { body, entry } : null;
  }

  async write(user: string, rel: string, body: Buffer | Readable): Promise<UserdataEntry> {
    if (rel === '') throw new AppError('INVALID_PATH', 'A file name is required.');
    await assertNoNameClash(this.files, user, 'userdata', rel);
    const s = await this.files.write(this.key(user, rel), body);
    return { path: rel, size: s.size, mtimeMs: s.mtimeMs, ctimeMs: s.mtimeMs, template: false };
  }

  /** Deletes the user's own file; 'template' when only a shared template is there. */
  async delete(user: string, rel: string): Promise<'deleted' | 'template' | 'missing'> {
    if (await this.files.delete(this.key(user, rel))) return 'deleted';
    const t = this.templateRel(rel);
    if (t !== null && (await this.templates.find(t))) return 'template';
    return 'missing';
  }

  /** Moves the user's own file, or copies a template to the user's own `dest`. */
  async move(user: string, from: string, dest: string): Promise<UserdataEntry> {
    if (dest === '') throw new AppError('INVALID_PATH', 'A destination file name is required.');
    const src = await this.stat(user, from);
    if (!src) throw new AppError('FILE_NOT_FOUND');
    if (src.template) {
      const body = await this.templates.read(this.templateRel(from)!);
      if (!body) throw new AppError('FILE_NOT_FOUND');
      return this.write(user, dest, body);
    }
    await assertNoNameClash(this.files, user, 'userdata', dest);
    await this.files.move(this.key(user, from), this.key(user, dest));
    const s = await this.files.stat(this.key(user, dest));
    return {
      path: dest,
      size: s?.size ?? 0,
      mtimeMs: s?.mtimeMs ?? this.clock(),
      ctimeMs: s?.mtimeMs ?? this.clock(),
      template: false,
    };
  }

  /**
   * Every file under `dir` (own files and templates), paths relative to the user root, sorted.
   * `null` when nothing is there (ComfyUI's "Directory not found").
   */
  async listUnder(user: string, dir: string): Promise<UserdataEntry[] | null> {
    const prefix = dir === '' ? this.key(user, '') : this.key(user, dir);
    const ownPrefix = `${this.key(user, '')}/`;
    const own: FileStat[] = await this.files.list(`${prefix}/`);
    const byPath = new Map<string, UserdataEntry>();
    for (const f of own) {
      if (!f.key.startsWith(ownPrefix)) continue;
      const rel = f.key.slice(ownPrefix.length);
      if (dir !== '' && !rel.startsWith(`${dir}/`)) continue;
      byPath.set(rel, { path: rel, size: f.size, mtimeMs: f.mtimeMs, ctimeMs: f.mtimeMs, template: false });
    }
    const inWorkflows = dir === '' || dir === WORKFLOWS || dir.startsWith(`${WORKFLOWS}/`);
    if (inWorkflows && this.templates.enabled) {
      for (const t of await this.templates.list()) {
        const rel = `${WORKFLOWS}/${t.path}`;
        if (dir !== '' && !rel.startsWith(`${dir}/`)) continue;
        if (!byPath.has(rel)) byPath.set(rel, fromTemplate(t));
      }
    }
    if (byPath.size === 0) return null;
    return [...byPath.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  }

  // ---- settings ------------------------------------------------------------------------------

  async getSettings(user: string): Promise<Record<string, unknown>> {
    const key = this.key(user, SETTINGS_FILE);
    if (!(await this.files.stat(key))) return {};
    try {
      // Bounded: a settings file over the limit (written before there was one, or as a userdata
      // file) is not read into memory; it counts as corrupted and the next save replaces it.
      const text = (await readAll(await this.files.read(key), this.settingsLimit)).toString('utf8');
      const parsed = parseJsonBounded(text);
      return typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)
        ? (parsed as Record<string, unknown>)
        : {};
    } catch {
      // ComfyUI answers {} for a corrupted settings file, too.
      return {};
    }
  }

  /** Read-modify-write of the settings, one at a time per user (the frontend saves in bursts). */
  updateSettings(
    user: string,
    change: (s: Record<string, unknown>) => Record<string, unknown>,
  ): Promise<void> {
    return this.lock.run(`settings:${user}`, async () => {
      const next = change(await this.getSettings(user));
      const body = Buffer.from(JSON.stringify(next, null, 4), 'utf8');
      if (body.length > this.settingsLimit)
        throw new AppError(
          'PAYLOAD_TOO_LARGE',
          `The settings would take ${body.length} bytes, more than SETTINGS_LIMIT (${this.settingsLimit}).`,
        );
      await this.files.write(this.key(user, SETTINGS_FILE), body);
    });
  }

  // ---- first visit -----------------------------------------------------------------------------

  async getState(user: string): Promise<UserState | null> {
    const raw = await this.blobs.getBlob(STATE_NS, user);
    if (raw === null) return null;
    try {
      return JSON.parse(raw) as UserState;
    } catch {
      return null;
    }
  }

  private putState(user: string, state: UserState): Promise<void> {
    return this.blobs.putBlob(STATE_NS, user, JSON.stringify(state));
  }

  /**
   * Seeds a new participant once: with a default workflow (the workshop template marked default on
   * the dashboard, else DEFAULT_WORKFLOW), copies it into their
   * `workflows/` and marks the tutorial as done (so the frontend does not open its template
   * browser over it); the workshop extension then opens that workflow once.
   */
  ensureSeeded(user: string): Promise<UserState> {
    return this.lock.run(`seed:${user}`, async () => {
      const existing = await this.getState(user);
      if (existing) return existing;
      const state: UserState = {
        seededAt: this.clock(),
        defaultWorkflow: null,
        defaultWorkflowOpened: false,
      };
      const wf = (await this.workshop?.defaultWorkflow()) ?? (await this.templates.defaultWorkflow());
      let rel: string | null;
      try {
        rel = wf ? `${WORKFLOWS}/${safeRelativePath(wf.name)}` : null;
      } catch {
        // A name no file store takes must not stand between a participant and their first page.
        rel = null;
      }
      if (wf && rel) {
        if (!(await this.files.stat(this.key(user, rel))))
          await this.files.write(this.key(user, rel), wf.body);
        state.defaultWorkflow = rel;
        await this.updateSettings(user, (s) =>
          'Comfy.TutorialCompleted' in s ? s : { ...s, 'Comfy.TutorialCompleted': true },
        );
      }
      await this.putState(user, state);
      return state;
    });
  }

  /**
   * "Send this template to everyone": writes `body` as `workflows/<name>` of one participant. An
   * existing file of theirs with that name is kept ('kept'), never overwritten: it may hold their
   * changes. Per-user, like every userdata write: only that participant's space is touched.
   */
  async giveWorkflow(user: string, name: string, body: Buffer): Promise<'written' | 'kept'> {
    const rel = `${WORKFLOWS}/${safeRelativePath(name)}`;
    return this.lock.run(`give:${user}:${rel}`, async () => {
      if (await this.files.stat(this.key(user, rel))) return 'kept';
      await this.write(user, rel, body);
      return 'written';
    });
  }

  async markDefaultWorkflowOpened(user: string): Promise<void> {
    await this.lock.run(`seed:${user}`, async () => {
      const s = await this.getState(user);
      if (s && !s.defaultWorkflowOpened) await this.putState(user, { ...s, defaultWorkflowOpened: true });
    });
  }
}

function fromTemplate(t: TemplateFile): UserdataEntry {
  return {
    path: `${WORKFLOWS}/${t.path}`,
    size: t.size,
    mtimeMs: t.mtimeMs,
    ctimeMs: t.ctimeMs,
    template: true,
  };
}
