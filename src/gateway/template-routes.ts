import type { FastifyInstance } from 'fastify';
import type { GatewayDeps } from './deps.js';

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
    const file = name.toLowerCase().endsWith('.json') ? name : `${name}.json`;
    const body = module === TEMPLATE_MODULE && !file.includes('/') ? await templates.read(file) : null;
    if (!body) return reply.status(404).type('application/octet-stream').send('');
    return reply.type('application/json').send(body);
  };
  app.get('/workflow_templates/:module/:name', one);
  app.get('/api/workflow_templates/:module/:name', one);
}
