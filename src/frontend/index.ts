import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import { FrontendAssets } from './frontend-assets.js';
import { FrontendCache } from './frontend-cache.js';
import { FolderFrontend, MirroredFrontend, type FrontendSite } from './frontend-site.js';
import { Precompressor } from './precompress.js';

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
  const root = config.FRONTEND_CACHE_DIR ?? join(config.DATA_DIR, 'frontend');
  if (config.FRONTEND_DIR) {
    const assets = await FrontendAssets.open(config.FRONTEND_DIR);
    // Its compressed copies live where mirrored versions' would (the folder may be read-only).
    for (const sub of ['encoded', 'tmp']) await mkdir(join(root, sub), { recursive: true, mode: 0o700 });
    const precompressor = new Precompressor(join(root, 'encoded'), join(root, 'tmp'), logger);
    await precompressor.load();
    const site = new FolderFrontend(assets, precompressor);
    site.precompressFolder().catch((err: unknown) => {
      logger.warn({ err }, 'could not precompress FRONTEND_DIR; serving it uncompressed');
    });
    return { site, cache: null };
  }
  if (!config.FRONTEND_MIRROR) return { site: new MirroredFrontend(null), cache: null };
  const cache = await FrontendCache.open({
    root,
    keepVersions: config.FRONTEND_KEEP_VERSIONS,
    logger,
  });
  return { site: new MirroredFrontend(cache), cache };
}
