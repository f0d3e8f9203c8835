/**
 * The value parsers the configuration schema's modules share (schema.ts, autoscale-schema.ts,
 * backup-schema.ts): environment variables are strings, so booleans and numbers are read here,
 * the same way for every variable.
 */
import { z } from 'zod';

/** `true`/`1`/`yes` → true; `false`/`0`/`no`/empty → false; anything else is an error. */
export const bool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no', ''])
  .transform((v) => v === 'true' || v === '1' || v === 'yes');

/** A whole number from `min` to `max`. */
export const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);
