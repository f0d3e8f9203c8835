/**
 * ComfyUI's template library (the worker's `comfyui-workflow-templates` package), mirrored from
 * workers the way the frontend is: a worker offers every file ComfyUI serves under `/templates/`
 * with its size and sha256, the control plane asks only for the contents it lacks, and the newest
 * complete copy is served to participants at `/<user>/templates/...` (with the workshop's own
 * templates put first, see ./template-index.ts), also while no worker is online.
 *
 * The storage is a {@link FrontendCache} of its own (folder DATA_DIR/template-library): the same
 * content-addressed blobs, versions assembled whole, old versions pruned.
 */
import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { join, resolve, sep } from 'node:path';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import { FrontendCache } from '../frontend/frontend-cache.js';
import { frontendWorkerRoutes } from '../frontend/worker-routes.js';
import type { FastifyInstance } from 'fastify';
import { templateLibraryOfferSchema } from '../worker/protocol.js';

export type TemplateLibrary = FrontendCache;

/** The mirrored library on disk, or null with TEMPLATE_LIBRARY_MIRROR=false. */
export async function openTemplateLibrary(
  config: Pick<Config, 'TEMPLATE_LIBRARY_MIRROR' | 'DATA_DIR'>,
  logger: Logger,
): Promise<TemplateLibrary | null> {
  if (!config.TEMPLATE_LIBRARY_MIRROR) return null;
  return FrontendCache.open({
    root: join(config.DATA_DIR, 'template-library'),
    keepVersions: 2,
    logger,
    what: 'ComfyUI template library',
    labelOf: (o) =>
      o.frontendVersion ? `templates ${o.frontendVersion}` : `templates from ComfyUI ${o.comfyuiVersion}`,
  });
}

/** `/worker/v1/templates/...`: where agents offer the library (same flow as the frontend's). */
export function templateLibraryWorkerRoutes(
  app: FastifyInstance,
  library: TemplateLibrary | null,
): Promise<void> {
  return frontendWorkerRoutes(app, library, {
    prefix: '/templates',
    offerSchema: templateLibraryOfferSchema,
    notWanted: 'TEMPLATES_NOT_WANTED',
  });
}

/** A file of the current mirrored library (path relative to `/templates/`), or null. */
export async function openLibraryFile(
  library: TemplateLibrary | null,
  rel: string,
): Promise<{ stream: Readable; size: number } | null> {
  const full = await libraryPath(library, rel);
  if (!full) return null;
  const s = await stat(full).catch(() => null);
  if (!s?.isFile()) return null;
  return { stream: createReadStream(full), size: s.size };
}

/**
 * Parsed indexes by `<versionId>:<path>`: the package's `index.json` is about a megabyte and every
 * participant's Templates dialog reads it, while a version's files never change.
 */
const parsedCache = new Map<string, unknown>();
const PARSED_CACHE_ENTRIES = 32;

/** The parsed JSON of a library file (`index.json`), or null when absent or broken. */
export async function readLibraryJson(library: TemplateLibrary | null, rel: string): Promise<unknown> {
  const full = await libraryPath(library, rel);
  if (!full) return null;
  const key = `${library!.current()!.id}:${rel}`;
  if (parsedCache.has(key)) return parsedCache.get(key);
  let parsed: unknown = null;
  try {
    parsed = JSON.parse(await readFile(full, 'utf8')) as unknown;
  } catch {
    // absent (a locale the package lacks) or broken: remembered as such too
  }
  if (parsedCache.size >= PARSED_CACHE_ENTRIES) parsedCache.delete(parsedCache.keys().next().value!);
  parsedCache.set(key, parsed);
  return parsed;
}

async function libraryPath(library: TemplateLibrary | null, rel: string): Promise<string | null> {
  const v = library?.current();
  if (!library || !v) return null;
  if (rel === '' || rel.split('/').some((seg) => seg === '' || seg.startsWith('.')) || rel.includes('\\'))
    return null;
  const root = resolve(library.dirOf(v.id));
  const full = resolve(root, rel);
  return full.startsWith(root + sep) ? full : null;
}
