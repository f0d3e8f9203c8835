import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { AuditLog } from '../admin/audit-log.js';
import { AppError } from '../errors.js';
import { parse } from '../http/parse.js';
import type { FrontendCache } from './frontend-cache.js';
import type { FrontendSite } from './frontend-site.js';

const useBody = z.strictObject({ versionId: z.string().regex(/^[0-9a-f]{16}$/, 'expected a version id') });

/**
 * `/api/v1/frontend` (instructors): which ComfyUI frontend participants get, the mirrored versions
 * kept on disk, and `PUT /api/v1/frontend/current` to serve another of them (audited).
 */
export function frontendAdminRoutes(
  app: FastifyInstance,
  deps: { site: FrontendSite; cache: FrontendCache | null; audit: AuditLog },
): void {
  app.get('/frontend', async () => {
    const current = deps.cache?.current()?.id ?? null;
    return {
      ...deps.site.status(),
      versions: (deps.cache?.list() ?? []).map(({ files, ...v }) => ({
        ...v,
        files: files.length,
        current: v.id === current,
      })),
    };
  });

  app.put('/frontend/current', async (request) => {
    const { versionId } = parse(useBody, request.body);
    const by = request.principal?.name ?? 'unknown';
    // Audited whether it works or not, like every state-changing /api/v1 call.
    return deps.audit.audited(by, 'frontend.use', versionId, async (d) => {
      d.via = 'api';
      if (!deps.cache) {
        throw new AppError(
          'FRONTEND_NOT_WANTED',
          'Frontends are not mirrored here (FRONTEND_DIR is set, or FRONTEND_MIRROR=false).',
        );
      }
      d.previous = deps.cache.current()?.id ?? null;
      const v = await deps.cache.use(versionId);
      d.label = v.label;
      return deps.site.status();
    });
  });
}
