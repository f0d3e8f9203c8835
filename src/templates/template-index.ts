/**
 * The template index a participant's Templates dialog reads (`/<user>/templates/index.json`): the
 * workshop's own templates as the first category, then ComfyUI's template library as mirrored
 * from a worker (the `comfyui-workflow-templates` package's `index.json`).
 *
 * The frontend (1.45) loads `templates/index[.<locale>].json`: a JSON array of categories
 * `{moduleName, title, type?, category?, isEssential?, icon?, templates: [{name, title,
 * description, mediaType, mediaSubtype, ...}]}`. A category with `moduleName: "default"` fetches a
 * template's workflow from `templates/<name>.json` and its thumbnail from
 * `templates/<name>-1.<mediaSubtype>`. Essential categories are listed right below "All" and
 * "Popular", ahead of the library's grouped ones: that is what puts the workshop first.
 */
import type { WorkshopTemplate } from './workshop-templates.js';
import { THUMBNAIL_TYPES } from './workshop-templates.js';

export const WORKSHOP_CATEGORY_TITLE = 'Workshop';

/** One template entry as the frontend's `TemplateInfo` expects it. */
export function templateInfoOf(t: WorkshopTemplate): Record<string, unknown> {
  return {
    name: t.id,
    title: t.title,
    description: t.description,
    mediaType: 'image',
    // No picture: a card with the title, served as SVG at `<id>-1.svg`.
    mediaSubtype: t.thumbnail ? THUMBNAIL_TYPES[t.thumbnail.type] : 'svg',
    tags: [WORKSHOP_CATEGORY_TITLE],
    date: new Date(t.updatedAt).toISOString().slice(0, 10),
    openSource: true,
    // The highest rank of the "Recommended" sort, so the workshop's templates lead it too.
    searchRank: 10,
  };
}

/** The workshop category, or null when the instructor has no templates. */
export function workshopCategory(templates: readonly WorkshopTemplate[]): Record<string, unknown> | null {
  if (templates.length === 0) return null;
  return {
    moduleName: 'default',
    title: WORKSHOP_CATEGORY_TITLE,
    type: 'image',
    isEssential: true,
    icon: 'icon-[lucide--graduation-cap]',
    templates: templates.map(templateInfoOf),
  };
}

/**
 * The index served to participants: the workshop category first, then the mirrored library's
 * categories (anything in it that is not an array of objects is dropped: a broken mirror must not
 * break the dialog). Library entries whose name a workshop template uses are left out.
 */
export function mergedIndex(templates: readonly WorkshopTemplate[], mirrored: unknown): unknown[] {
  const workshop = workshopCategory(templates);
  const taken = new Set(templates.map((t) => t.id));
  const library = Array.isArray(mirrored)
    ? mirrored
        .filter((c): c is Record<string, unknown> => typeof c === 'object' && c !== null && !Array.isArray(c))
        .map((c) =>
          Array.isArray(c.templates)
            ? {
                ...c,
                templates: (c.templates as unknown[]).filter(
                  (t) => !(t && typeof t === 'object' && taken.has((t as { name?: unknown }).name as string)),
                ),
              }
            : c,
        )
    : [];
  return workshop ? [workshop, ...library] : library;
}
