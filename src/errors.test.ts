import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { AppError, ERROR_CODES, QueueLimitError } from './errors.js';

describe('error table', () => {
  const doc = readFileSync(new URL('../docs/errors.md', import.meta.url), 'utf8');

  it.each(Object.entries(ERROR_CODES))(
    '%s is documented in docs/errors.md with its status',
    (code, { status }) => {
      expect(doc).toMatch(new RegExp(`^\\| \`${code}\` +\\| ${status} +\\|`, 'm'));
    },
  );

  it('documents no code that does not exist', () => {
    const documented = [...doc.matchAll(/^\| `([A-Z_]+)` +\|/gm)].map((m) => m[1]);
    expect(documented.sort()).toEqual(Object.keys(ERROR_CODES).sort());
  });

  it('serialises to the one JSON shape', () => {
    const err = new QueueLimitError('user003', 10);
    expect(err.status).toBe(429);
    expect(err.retryAfter).toBeGreaterThan(0);
    expect(err.toJSON()).toEqual({
      error: {
        code: 'QUEUE_LIMIT',
        message: expect.stringContaining('user003'),
        details: { user: 'user003', limit: 10 },
      },
    });
    expect(new AppError('NOT_FOUND').toJSON()).toEqual({
      error: { code: 'NOT_FOUND', message: 'Not found.' },
    });
  });
});
