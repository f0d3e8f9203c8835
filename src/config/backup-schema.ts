/**
 * The BACKUP_ variables of the configuration schema (scheduled backups, src/backup), spread into
 * `configSchema` in schema.ts, and the cross-field checks that involve only them. Kept apart so the
 * backup settings and their duration parser read as one unit; the check that a backup bucket does
 * not overlap the files' S3 prefix needs FILES/S3_ too, so it stays in schema.ts. Each `describe()`
 * is documentation (`npm run docs:config`).
 */
import { z } from 'zod';
import { bool, int } from './parsers.js';

/** `30m`, `6h`, `1d`, `90s` → milliseconds; `off` / `0` → 0 (disabled). */
const duration = z
  .string()
  .regex(/^(off|0|\d+(\.\d+)?\s*(s|m|h|d))$/i, 'expected a duration such as 30m, 6h or 1d, or off')
  .transform((s): number => {
    const m = /^(\d+(?:\.\d+)?)\s*(s|m|h|d)$/i.exec(s);
    if (!m) return 0;
    const unit = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2]!.toLowerCase() as 's'];
    return Math.round(Number(m[1]) * unit);
  })
  .refine((ms) => ms === 0 || ms >= 60_000, 'must be at least 1m')
  .refine((ms) => ms <= 2_147_483_647, 'must be at most 24d');

export const BACKUP_CONFIG = {
  BACKUP_INTERVAL: duration
    .default(0)
    .describe(
      'Run `comfy-multi backup` inside the server this often, e.g. 6h, 30m or 1d (at least 1m); `off` or 0 (default) disables it. Needs BACKUP_TARGET.',
    ),
  BACKUP_TARGET: z
    .string()
    .min(1)
    .optional()
    .describe(
      'Where backups go: `s3://bucket/prefix` or a folder path. Default target of `comfy-multi backup` and `restore`; required with BACKUP_INTERVAL.',
    ),
  BACKUP_KEEP: int(0, 100_000)
    .default(14)
    .describe('Snapshots to keep in BACKUP_TARGET after each backup (older ones are deleted); 0 keeps all.'),
  BACKUP_S3_ENDPOINT: z
    .string()
    .url()
    .optional()
    .describe('Endpoint of an s3:// BACKUP_TARGET when it differs from S3_ENDPOINT.'),
  BACKUP_S3_REGION: z
    .string()
    .min(1)
    .optional()
    .describe('Region of an s3:// BACKUP_TARGET; default S3_REGION.'),
  BACKUP_S3_FORCE_PATH_STYLE: bool
    .optional()
    .describe('Path-style addressing for an s3:// BACKUP_TARGET; default S3_FORCE_PATH_STYLE.'),
  BACKUP_S3_ACCESS_KEY_ID: z
    .string()
    .min(1)
    .optional()
    .describe(
      'Access key of an s3:// BACKUP_TARGET, when backups use other credentials than the files (recommended); default: the standard AWS variables.',
    ),
  BACKUP_S3_SECRET_ACCESS_KEY: z
    .string()
    .min(1)
    .optional()
    .describe('Secret key matching BACKUP_S3_ACCESS_KEY_ID.'),
};

/** Cross-field checks of the BACKUP_ variables alone, each an issue naming the variable. */
export function checkBackup(
  c: {
    BACKUP_INTERVAL: number;
    BACKUP_TARGET?: string | undefined;
    BACKUP_S3_ACCESS_KEY_ID?: string | undefined;
    BACKUP_S3_SECRET_ACCESS_KEY?: string | undefined;
  },
  ctx: z.RefinementCtx,
): void {
  if (c.BACKUP_INTERVAL > 0 && !c.BACKUP_TARGET) {
    ctx.addIssue({
      code: 'custom',
      path: ['BACKUP_TARGET'],
      message: 'is required when BACKUP_INTERVAL is set',
    });
  }
  if (!c.BACKUP_S3_ACCESS_KEY_ID !== !c.BACKUP_S3_SECRET_ACCESS_KEY) {
    ctx.addIssue({
      code: 'custom',
      path: [c.BACKUP_S3_ACCESS_KEY_ID ? 'BACKUP_S3_SECRET_ACCESS_KEY' : 'BACKUP_S3_ACCESS_KEY_ID'],
      message: 'set both BACKUP_S3_ACCESS_KEY_ID and BACKUP_S3_SECRET_ACCESS_KEY, or neither',
    });
  }
}
