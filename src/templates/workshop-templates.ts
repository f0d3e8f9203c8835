/**
 * The instructor's workshop templates: UI-format workflows uploaded on the dashboard, each with a
 * title, a description and an optional thumbnail, in the order the instructor chose, and at most
 * one marked as the workshop's default workflow (it opens on a participant's first login).
 *
 * Kept in the store's blob API (namespace `templates`), so every control-plane process on the same
 * store sees the same list, and backups carry it with the rest of the state:
 *
 *     index           {order: [id...], defaultId, templates: {id: meta}}
 *     wf.<id>         the workflow's JSON text
 *     thumb.<id>      {type, base64} of the thumbnail
 *
 * Participants see them first in ComfyUI's Templates dialog, in their own "Workshop" category
 * (src/templates/template-index.ts), under the names `<id>` (`workshop-<slug>`).
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { AppError } from '../errors.js';
import { KeyedLock } from '../gateway/lock.js';
import type { BlobStore } from '../store/types.js';

export const TEMPLATES_NS = 'templates';
const INDEX_KEY = 'index';

/** A workflow file larger than this is refused (the largest real workflows are ~1 MB). */
export const MAX_TEMPLATE_BYTES = 8 * 1024 * 1024;
/** A thumbnail larger than this is refused. */
export const MAX_THUMBNAIL_BYTES = 2 * 1024 * 1024;
/** Templates one workshop may hold. */
export const MAX_TEMPLATES = 200;

export const THUMBNAIL_TYPES = {
  'image/png': 'png',
  'image/jpeg': 'jpg',
  'image/webp': 'webp',
} as const;
export type ThumbnailType = keyof typeof THUMBNAIL_TYPES;

export const templateIdSchema = z
  .string()
  .regex(/^workshop-[a-z0-9][a-z0-9-]{0,59}$/, 'expected a template id such as workshop-my-flow');

const metaSchema = z.object({
  id: templateIdSchema,
  title: z.string(),
  description: z.string(),
  /** The file name it gets in a participant's `workflows/` list (sent to everyone, or the default). */
  fileName: z.string(),
  size: z.number(),
  sha256: z.string(),
  thumbnail: z
    .object({ type: z.enum(['image/png', 'image/jpeg', 'image/webp']), size: z.number() })
    .nullable(),
  createdAt: z.number(),
  updatedAt: z.number(),
  by: z.string(),
});
export type WorkshopTemplate = z.infer<typeof metaSchema>;

const indexSchema = z.object({
  order: z.array(z.string()),
  defaultId: z.string().nullable(),
  templates: z.record(z.string(), metaSchema),
});
type Index = z.infer<typeof indexSchema>;

export interface TemplateInput {
  title: string;
  description: string;
  /** The workflow's JSON text (already checked by the caller). */
  workflow: string;
  thumbnail?: { type: ThumbnailType; body: Buffer } | null | undefined;
}

/** `LTX-2 Text → Video!` → `ltx-2-text-video`. */
export function slugOf(title: string): string {
  const s = title
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '')
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 48)
    .replace(/-+$/, '');
  return s === '' ? 'template' : s;
}

export class WorkshopTemplates {
  /** Index changes one at a time (in-process; the dashboard is the only writer). */
  private readonly lock = new KeyedLock();

  constructor(
    private readonly store: BlobStore,
    private readonly clock: () => number = Date.now,
  ) {}

  private async index(): Promise<Index> {
    const raw = await this.store.getBlob(TEMPLATES_NS, INDEX_KEY);
    if (!raw) return { order: [], defaultId: null, templates: {} };
    try {
      const parsed = indexSchema.safeParse(JSON.parse(raw));
      if (parsed.success) return parsed.data;
    } catch {
      // fall through: a damaged index reads as empty rather than breaking every participant's page
    }
    return { order: [], defaultId: null, templates: {} };
  }

  private putIndex(ix: Index): Promise<void> {
    return this.store.putBlob(TEMPLATES_NS, INDEX_KEY, JSON.stringify(ix));
  }

  /** Every template in the instructor's order, and which one is the default. */
  async list(): Promise<{ templates: WorkshopTemplate[]; defaultId: string | null }> {
    const ix = await this.index();
    return {
      templates: ix.order.map((id) => ix.templates[id]).filter((t): t is WorkshopTemplate => !!t),
      defaultId: ix.defaultId,
    };
  }

  async get(id: string): Promise<WorkshopTemplate | null> {
    return (await this.index()).templates[id] ?? null;
  }

  /** The workflow's JSON text, or null. */
  async workflow(id: string): Promise<string | null> {
    if (!templateIdSchema.safeParse(id).success) return null;
    return this.store.getBlob(TEMPLATES_NS, `wf.${id}`);
  }

  async thumbnail(id: string): Promise<{ type: ThumbnailType; body: Buffer } | null> {
    if (!templateIdSchema.safeParse(id).success) return null;
    const raw = await this.store.getBlob(TEMPLATES_NS, `thumb.${id}`);
    if (!raw) return null;
    try {
      const t = JSON.parse(raw) as { type: ThumbnailType; base64: string };
      return t.type in THUMBNAIL_TYPES ? { type: t.type, body: Buffer.from(t.base64, 'base64') } : null;
    } catch {
      return null;
    }
  }

  /** The default workflow a participant's first login opens: its file name and contents, or null. */
  async defaultWorkflow(): Promise<{ id: string; name: string; body: Buffer } | null> {
    const ix = await this.index();
    const t = ix.defaultId ? ix.templates[ix.defaultId] : undefined;
    if (!t) return null;
    const text = await this.workflow(t.id);
    return text === null ? null : { id: t.id, name: t.fileName, body: Buffer.from(text, 'utf8') };
  }

  /** Adds a template at the end of the list. */
  add(input: TemplateInput, by: string): Promise<WorkshopTemplate> {
    return this.lock.run('index', async () => {
      const ix = await this.index();
      if (ix.order.length >= MAX_TEMPLATES)
        throw new AppError(
          'CONFLICT',
          `A workshop holds at most ${MAX_TEMPLATES} templates; remove one first.`,
        );
      const base = `workshop-${slugOf(input.title)}`;
      let id = base;
      for (let n = 2; ix.templates[id]; n++) id = `${base}-${n}`;
      const now = this.clock();
      const meta = await this.writeContent(id, input, { createdAt: now, by });
      ix.templates[id] = meta;
      ix.order.push(id);
      await this.putIndex(ix);
      return meta;
    });
  }

  /**
   * Replaces a template's workflow (and title, description, thumbnail when given). Its id, place
   * and default mark stay; a thumbnail is kept unless a new one (or `null`, to drop it) is given.
   */
  replace(id: string, input: Partial<TemplateInput>, by: string): Promise<WorkshopTemplate> {
    return this.lock.run('index', async () => {
      const ix = await this.index();
      const old = ix.templates[id];
      if (!old) throw new AppError('NOT_FOUND', `No workshop template ${id}.`);
      const workflow = input.workflow ?? (await this.workflow(id)) ?? '{}';
      let thumbnail = input.thumbnail;
      if (thumbnail === undefined && old.thumbnail) thumbnail = await this.thumbnail(id);
      const meta = await this.writeContent(
        id,
        {
          title: input.title ?? old.title,
          description: input.description ?? old.description,
          workflow,
          thumbnail: thumbnail ?? null,
        },
        { createdAt: old.createdAt, by },
      );
      ix.templates[id] = meta;
      await this.putIndex(ix);
      return meta;
    });
  }

  /** Sets the order: `ids` must name every template exactly once. */
  reorder(ids: string[]): Promise<WorkshopTemplate[]> {
    return this.lock.run('index', async () => {
      const ix = await this.index();
      const same =
        ids.length === ix.order.length &&
        new Set(ids).size === ids.length &&
        ids.every((id) => ix.templates[id]);
      if (!same)
        throw new AppError(
          'VALIDATION_FAILED',
          'The new order must name every workshop template exactly once.',
          {
            details: { current: ix.order },
          },
        );
      ix.order = [...ids];
      await this.putIndex(ix);
      return ix.order.map((id) => ix.templates[id]!);
    });
  }

  /** Removes a template (and its default mark). Participants' own copies stay theirs. */
  remove(id: string): Promise<WorkshopTemplate> {
    return this.lock.run('index', async () => {
      const ix = await this.index();
      const old = ix.templates[id];
      if (!old) throw new AppError('NOT_FOUND', `No workshop template ${id}.`);
      delete ix.templates[id];
      ix.order = ix.order.filter((x) => x !== id);
      if (ix.defaultId === id) ix.defaultId = null;
      await this.putIndex(ix);
      await this.store.deleteBlob(TEMPLATES_NS, `wf.${id}`);
      await this.store.deleteBlob(TEMPLATES_NS, `thumb.${id}`);
      return old;
    });
  }

  /** Marks one template as the workshop's default workflow, or none (`null`). */
  setDefault(id: string | null): Promise<{ previous: string | null }> {
    return this.lock.run('index', async () => {
      const ix = await this.index();
      if (id !== null && !ix.templates[id]) throw new AppError('NOT_FOUND', `No workshop template ${id}.`);
      const previous = ix.defaultId;
      ix.defaultId = id;
      await this.putIndex(ix);
      return { previous };
    });
  }

  private async writeContent(
    id: string,
    input: TemplateInput,
    keep: { createdAt: number; by: string },
  ): Promise<WorkshopTemplate> {
    const size = Buffer.byteLength(input.workflow, 'utf8');
    await this.store.putBlob(TEMPLATES_NS, `wf.${id}`, input.workflow);
    if (input.thumbnail) {
      await this.store.putBlob(
        TEMPLATES_NS,
        `thumb.${id}`,
        JSON.stringify({ type: input.thumbnail.type, base64: input.thumbnail.body.toString('base64') }),
      );
    } else {
      await this.store.deleteBlob(TEMPLATES_NS, `thumb.${id}`);
    }
    return {
      id,
      title: input.title,
      description: input.description,
      fileName: `${fileNameOf(input.title)}.json`,
      size,
      sha256: createHash('sha256').update(input.workflow).digest('hex'),
      thumbnail: input.thumbnail ? { type: input.thumbnail.type, size: input.thumbnail.body.length } : null,
      createdAt: keep.createdAt,
      updatedAt: this.clock(),
      by: keep.by,
    };
  }
}

/** A file name for a participant's workflow list: the title without path or control characters. */
function fileNameOf(title: string): string {
  const s = title
    // eslint-disable-next-line no-control-regex -- control characters are exactly what is dropped
    .replace(/[\\/:*?"<>|\u0000-\u001f\u007f]+/g, ' ')
    .replace(/\s+/g, ' ')
    .trim();
  // By code points, so an emoji is never cut in half; file systems count bytes: keep the name
  // (plus `.json`) well under their 255.
  const chars = Array.from(s.replace(/^\.+/, '')).slice(0, 80);
  while (Buffer.byteLength(chars.join(''), 'utf8') > 200) chars.pop();
  let t = chars.join('').trim();
  // `C:…` reads as a drive letter to the path checks (the colon is gone already; be sure).
  t = t.replace(/^([a-zA-Z]):/, '$1 ').trim();
  return t === '' ? 'workshop template' : t;
}
