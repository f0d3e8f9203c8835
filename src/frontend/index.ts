import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import { FrontendAssets } from './frontend-assets.js';
import { FrontendCache } from './frontend-cache.js';
import { FolderFrontend, MirroredFrontend, type FrontendSite } from './frontend-site.js';

export type { FrontendSite, FrontendStatus } from './frontend-site.js';
export type { FrontendCache, FrontendVersion } from './frontend-cache.js';
export { frontendRootRoutes } from './root-routes.js';
export { frontendWorkerRoutes } from './worker-routes.js';
export { frontendAdminRoutes } from './admin-routes.js';

/**
 * The frontend participants get: FRONTEND_DIR when set (checked now, so a wrong path fails at
 * start-up), else the versions mirrored from workers (unless FRONTEND_MIRROR=false).
 */
export async function openFrontend(
  config: Pick<
    Config,
    'FRONTEND_DIR' | 'FRONTEND_MIRROR' | 'FRONTEND_CACHE_DIR' | 'FRONTEND_KEEP_VERSIONS' | 'DATA_DIR'
  >,
  logger: Logger,
): Promise<{ site: FrontendSite; cache: FrontendCache | null }> {
  if (config.FRONTEND_DIR) {
    return { site: new FolderFrontend(await FrontendAssets.open(config.FRONTEND_DIR)), cache: null };
  }
  if (!config.FRONTEND_MIRROR) return { site: new MirroredFrontend(null), cache: null };
  const cache = await FrontendCache.open({
    root: config.FRONTEND_CACHE_DIR ?? join(config.DATA_DIR, 'frontend'),
    keepVersions: config.FRONTEND_KEEP_VERSIONS,
    logger,
  });
  return { site: new MirroredFrontend(cache), cache };
}
