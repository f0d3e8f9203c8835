import type { FastifyInstance } from 'fastify';
import type { GatewayDeps } from './deps.js';
import { contentTypeOf } from './mime.js';

const XML_ESCAPES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&apos;',
};

/** A 4:3 card with the template's name, for templates without a picture. */
export function nameCard(name: string): string {
  const text = (name.length > 40 ? `${name.slice(0, 39)}…` : name).replace(
    /[&<>"']/g,
    (c) => XML_ESCAPES[c]!,
  );
  return `<svg xmlns="http://www.w3.org/2000/svg" width="400" height="300" viewBox="0 0 400 300"><rect width="400" height="300" fill="#262a33"/><text x="200" y="150" fill="#e8e8e8" font-family="system-ui,sans-serif" font-size="22" text-anchor="middle" dominant-baseline="middle">${text}</text></svg>`;
}

/** The module name our shared templates appear under in the frontend's template browser. */
export const TEMPLATE_MODULE = 'workshop';

/**
 * `workflow_templates`: ComfyUI lists custom nodes' example workflows here (`{module: [names]}`)
 * and serves them at `/api/workflow_templates/<module>/<name>.json`. The shared TEMPLATES_DIR
 * workflows appear as the module `workshop` (top-level files), besides their place in every
 * participant's `workflows/` list.
 */
export function templateRoutes(app: FastifyInstance, deps: GatewayDeps): void {
  const { templates } = deps;

  const list = async () => {
    const names = (await templates.list())
      .filter((t) => !t.path.includes('/'))
      .map((t) => t.path.replace(/\.json$/i, ''));
    return names.length ? { [TEMPLATE_MODULE]: names } : {};
  };
  app.get('/workflow_templates', list);
  app.get('/api/workflow_templates', list);

  const one = async (request: import('fastify').FastifyRequest, reply: import('fastify').FastifyReply) => {
    const { module, name } = request.params as { module: string; name: string };
    const picture = /^(.+)\.(?:jpe?g|png|webp)$/i.exec(name);
    if (picture && module === TEMPLATE_MODULE) return thumbnail(reply, picture[1]!);
    const file = name.toLowerCase().endsWith('.json') ? name : `${name}.json`;
    const body = module === TEMPLATE_MODULE && !file.includes('/') ? await templates.read(file) : null;
    if (!body) return reply.status(404).type('application/octet-stream').send('');
    return reply.type('application/json').send(body);
  };
  /**
   * The template browser shows `<name>.jpg` for every custom template: the picture beside the
   * template in TEMPLATES_DIR, else a plain card with its name (instead of a broken image).
   */
  const thumbnail = async (reply: import('fastify').FastifyReply, base: string) => {
    if (!(await templates.find(`${base}.json`)) || base.includes('/')) {
      return reply.status(404).type('application/octet-stream').send('');
    }
    const found = await templates.thumbnail(base);
    if (found)
      return reply
        .type(contentTypeOf(`x.${found.ext}`))
        .header('cache-control', 'no-cache')
        .send(found.body);
    return reply
      .type('image/svg+xml')
      .header('cache-control', 'no-cache')
      .header('content-security-policy', "default-src 'none'; style-src 'unsafe-inline'")
      .send(nameCard(base));
  };

  app.get('/workflow_templates/:module/:name', one);
  app.get('/api/workflow_templates/:module/:name', one);
}
