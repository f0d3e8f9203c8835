import type { FastifyInstance } from 'fastify';
import { AppError } from '../errors.js';

/**
 * The deepest nesting of arrays and objects a JSON body may have. Real bodies stay far below it
 * (a ComfyUI workflow with subgraphs nests about 15 levels); 100,000 nested arrays, on the other
 * hand, overflow the stack of every recursive step after parsing (cloning, validating, storing).
 */
export const MAX_JSON_DEPTH = 128;

/** Throws INVALID_JSON when `text` nests arrays/objects deeper than `max` (strings are skipped). */
export function assertJsonDepth(text: string, max = MAX_JSON_DEPTH): void {
  if (text.length <= max) return; // cannot nest deeper than it has characters
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > max)
        throw new AppError('INVALID_JSON', `The JSON body is nested more than ${max} levels deep.`);
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
}

/** `JSON.parse` with the depth bound: INVALID_JSON for malformed or too deeply nested text. */
export function parseJsonBounded(text: string): unknown {
  assertJsonDepth(text);
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new AppError('INVALID_JSON');
  }
}

/**
 * Puts the depth bound in front of fastify's own JSON parser (which keeps its prototype-poisoning
 * protection) for every route of `app` that does not bring its own parser.
 */
export function installBoundedJsonParser(app: FastifyInstance): void {
  const parse = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    try {
      assertJsonDepth(body as string);
    } catch (err) {
      done(err as Error, undefined);
      return;
    }
    parse(request, body as string, done);
  });
}
