import type { FastifyInstance, FastifyReply } from 'fastify';
import { openLibraryFile, readLibraryJson } from '../templates/library.js';
import { mergedIndex } from '../templates/template-index.js';
import { templateIdSchema } from '../templates/workshop-templates.js';
import type { GatewayDeps } from './deps.js';
import { contentTypeOf } from './mime.js';
import { nameCard } from './template-routes.js';

const INDEX = /^index(\.[a-zA-Z_-]{2,10})?\.json$/;
const WORKSHOP_JSON = /^(workshop-[a-z0-9][a-z0-9-]{0,59})\.json$/;
const WORKSHOP_THUMB = /^(workshop-[a-z0-9][a-z0-9-]{0,59})-1\.(png|jpg|webp|svg)$/;

function notFound(reply: FastifyReply) {
  return reply.status(404).type('application/octet-stream').header('cache-control', 'no-cache').send('');
}

/**
 * `/<user>/templates/...`, what ComfyUI serves from its `comfyui-workflow-templates` package and
 * the frontend's Templates dialog reads: `index[.<locale>].json` (the categories), then each
 * template's `<name>.json` and `<name>-1.<ext>` thumbnail. Answered from the workshop's own
 * templates (always first, their own "Workshop" category) and the library mirrored from a worker.
 * A locale index the mirror lacks is a 404, so the frontend falls back to `index.json` as it does
 * against ComfyUI; without any mirror every index is just the workshop category (or `[]`).
 */
export function templateLibraryRoutes(app: FastifyInstance, deps: GatewayDeps): void {
  const { workshopTemplates: workshop, templateLibrary: library } = deps;

  app.get('/templates/*', async (request, reply) => {
    const rel = (request.params as { '*': string })['*'];
    reply.header('cache-control', 'no-cache');
    if (INDEX.test(rel)) {
      const mirrored = await readLibraryJson(library, rel);
      if (mirrored === null && rel !== 'index.json' && library?.current()) return notFound(reply);
      const { templates } = await workshop.list();
      return reply.type('application/json').send(mergedIndex(templates, mirrored));
    }
    const wf = WORKSHOP_JSON.exec(rel);
    if (wf && templateIdSchema.safeParse(wf[1]).success) {
      const text = await workshop.workflow(wf[1]!);
      if (text !== null) return reply.type('application/json').send(text);
    }
    const thumb = WORKSHOP_THUMB.exec(rel);
    if (thumb) {
      const t = await workshop.get(thumb[1]!);
      if (t) {
        const pic = t.thumbnail ? await workshop.thumbnail(t.id) : null;
        if (pic) return reply.type(pic.type).send(pic.body);
        return reply
          .type('image/svg+xml')
          .header('content-security-policy', "default-src 'none'; style-src 'unsafe-inline'")
          .send(nameCard(t.title));
      }
    }
    const file = await openLibraryFile(library, rel);
    if (file) {
      const type = rel.endsWith('.json') ? 'application/json' : contentTypeOf(rel);
      return (
        reply
          .type(type)
          .header('content-length', String(file.size))
          .header('x-content-type-options', 'nosniff')
          // Pictures and JSON only: nothing of the package may run as a page of our origin (an SVG
          // opened directly, say).
          .header(
            'content-security-policy',
            "default-src 'none'; img-src data:; style-src 'unsafe-inline'; sandbox",
          )
          .send(file.stream)
      );
    }
    // The frontend reads these two as optional JSON: an empty object keeps its console quiet.
    if (rel === 'index_logo.json' || rel === 'fuse_options.json')
      return reply.type('application/json').send({});
    return notFound(reply);
  });
}
