import type { z } from 'zod';
import { validationError } from './error-handler.js';

/** Validates untrusted input; a mismatch becomes a VALIDATION_FAILED error naming the field. */
export function parse<S extends z.ZodType>(schema: S, value: unknown): z.output<S> {
  const r = schema.safeParse(value);
  if (!r.success) throw validationError(r.error);
  return r.data;
}
