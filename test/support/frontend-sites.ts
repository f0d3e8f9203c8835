/**
 * A ComfyUI frontend as the frontend-mirror tests describe it (path → content), and the offer a
 * worker sends for it: each file's path, size and sha256.
 */
import { createHash } from 'node:crypto';
import type { FrontendOffer } from '../../src/worker/protocol.js';

/** A frontend as path → content. */
export type Site = Record<string, string | Buffer>;

const sha256 = (s: string | Buffer): string => createHash('sha256').update(s).digest('hex');

/** What a worker whose ComfyUI (0.3.64) serves `site` as frontend `version` offers. */
export function offerOf(site: Site, version: string | null): FrontendOffer {
  return {
    source: 'http',
    comfyuiVersion: '0.3.64',
    frontendVersion: version,
    files: Object.entries(site).map(([path, body]) => ({
      path,
      size: Buffer.byteLength(body),
      sha256: sha256(body),
    })),
  };
}
