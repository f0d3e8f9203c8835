import { readdir, readFile, stat } from 'node:fs/promises';
import { basename, join, relative, resolve, sep } from 'node:path';
import { safeRelativePath } from '../files/safe-path.js';

/** One shared workflow file, as it appears under every participant's `workflows/`. */
export interface TemplateFile {
  /** Path relative to `workflows/`, with `/` separators. */
  path: string;
  size: number;
  mtimeMs: number;
  ctimeMs: number;
}

const LIST_TTL_MS = 2000;
const MAX_TEMPLATES = 2000;

/**
 * The read-only workflow templates from `TEMPLATES_DIR` (every `*.json`, subfolders included) and
 * the `DEFAULT_WORKFLOW` file. Listings are cached for two seconds, so an instructor who drops a
 * file into the folder sees it in every participant's list almost at once, without a restart.
 */
const THUMBNAIL_EXTS = ['webp', 'jpg', 'jpeg', 'png'] as const;

export class TemplateSource {
  private readonly root: string | null;
  private cached: { at: number; files: TemplateFile[] } | null = null;

  constructor(
    dir: string | null,
    private readonly defaultWorkflowPath: string | null,
  ) {
    this.root = dir ? resolve(dir) : null;
  }

  get enabled(): boolean {
    return this.root !== null;
  }

  async list(): Promise<TemplateFile[]> {
    if (!this.root) return [];
    const now = Date.now();
    if (this.cached && now - this.cached.at < LIST_TTL_MS) return this.cached.files;
    const out: TemplateFile[] = [];
    const root = this.root;
    const walk = async (dir: string, depth: number): Promise<void> => {
      if (depth > 8 || out.length >= MAX_TEMPLATES) return;
      const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
      for (const e of entries) {
        if (e.name.startsWith('.')) continue;
        const full = join(dir, e.name);
        if (e.isDirectory()) await walk(full, depth + 1);
        else if (e.isFile() && e.name.toLowerCase().endsWith('.json')) {
          const s = await stat(full).catch(() => null);
          if (!s) continue;
          out.push({
            path: relative(root, full).split(sep).join('/'),
            size: s.size,
            mtimeMs: s.mtimeMs,
            ctimeMs: s.ctimeMs,
          });
        }
      }
    };
    await walk(root, 0);
    out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    this.cached = { at: now, files: out };
    return out;
  }

  /** The template at `rel` (relative to `workflows/`), or null. Never leaves TEMPLATES_DIR. */
  async find(rel: string): Promise<TemplateFile | null> {
    if (!this.root) return null;
    let safe: string;
    try {
      safe = safeRelativePath(rel);
    } catch {
      return null;
    }
    return (await this.list()).find((t) => t.path === safe) ?? null;
  }

  async read(rel: string): Promise<Buffer | null> {
    const t = await this.find(rel);
    if (!t || !this.root) return null;
    const full = resolve(this.root, t.path);
    if (!full.startsWith(this.root + sep)) return null;
    return readFile(full).catch(() => null);
  }

  /**
   * A picture for the top-level template `<name>.json`, as the template browser shows it: the
   * first of `<name>.webp|jpg|jpeg|png` beside it. Null when the template has none (or does not exist).
   */
  async thumbnail(name: string): Promise<{ body: Buffer; ext: string } | null> {
    if (!this.root || name.includes('/') || !(await this.find(`${name}.json`))) return null;
    const files = await readdir(this.root).catch(() => [] as string[]);
    for (const ext of THUMBNAIL_EXTS) {
      const file = files.find((f) => f.toLowerCase() === `${name.toLowerCase()}.${ext}`);
      if (!file) continue;
      const body = await readFile(join(this.root, file)).catch(() => null);
      if (body) return { body, ext };
    }
    return null;
  }

  /** The configured default workflow: its file name and contents, or null. */
  async defaultWorkflow(): Promise<{ name: string; body: Buffer } | null> {
    if (!this.defaultWorkflowPath) return null;
    const body = await readFile(this.defaultWorkflowPath).catch(() => null);
    if (!body) return null;
    let name = basename(this.defaultWorkflowPath);
    if (!name.toLowerCase().endsWith('.json')) name += '.json';
    return { name, body };
  }
}
