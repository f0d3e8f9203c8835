/**
 * Seeded random requests in the same live run (cheap ones only; the unit-level fuzzers of prompt
 * validation, multipart parsing and path handling live beside that code). Each answer must be a
 * deliberate one: no 5xx, and an error body in one of the shapes the corpus knows.
 */
import fc from 'fast-check';
import { rawExchange, requestBytes } from './raw-http.js';
import type { Ctx, HttpResult } from './types.js';
import type { Outcome } from './runner.js';

export const FUZZ_SEED = 20_261_206;

const SEGMENT_PIECES = [
  '..',
  '.',
  '%2e',
  '%2E%2e',
  '%2f',
  '%2F',
  '%5c',
  '%00',
  '%25',
  '%252e',
  '%ff',
  '%c0%ae',
  '%e2%80%ae',
  '%EF%BC%8E',
  'a',
  'b.png',
  'api',
  'view',
  'userdata',
  'assets',
  'index.html',
  '~',
  ':',
  ';',
  '@',
  '!',
  '$',
  '&',
  '=',
  '+',
  ',',
  '%20',
  '%0a',
  '%0d',
  'é',
  'x'.repeat(300),
];

/** Random request targets under /alice/ and the site root, sent as alice. */
const pathArb = fc
  .tuple(
    fc.constantFrom(
      '/alice/',
      '/alice/api/',
      '/alice/api/userdata/',
      '/assets/',
      '/',
      '/admin/',
      '/worker/v1/',
    ),
    fc.array(
      fc.array(fc.constantFrom(...SEGMENT_PIECES), { minLength: 1, maxLength: 4 }).map((p) => p.join('')),
      {
        minLength: 1,
        maxLength: 6,
      },
    ),
    fc.option(
      fc.array(fc.constantFrom(...SEGMENT_PIECES), { maxLength: 4 }).map((p) => p.join('')),
      { nil: undefined },
    ),
  )
  .map(
    ([prefix, segs, query]) =>
      `${prefix}${segs.join('/')}${query === undefined ? '' : `?filename=${query}&dir=${query}`}`,
  )
  // Non-ASCII goes out percent-encoded; the request line itself must stay parseable.
  .map((p) => p.replace(/[^\x21-\x7e]/g, (ch) => encodeURIComponent(ch)));

const promptArb = fc.oneof(
  fc.jsonValue({ maxDepth: 5 }),
  fc.record({ prompt: fc.jsonValue({ maxDepth: 5 }) }),
  fc.record({
    prompt: fc.dictionary(
      fc.string({ maxLength: 8 }),
      fc.record({
        class_type: fc.constantFrom(
          'EmptyImage',
          'SaveImage',
          'ImageInvert',
          'LoadImage',
          'Nope',
          '__proto__',
        ),
        inputs: fc.dictionary(
          fc.constantFrom('image', 'images', 'width', 'height', 'color', 'filename_prefix'),
          fc.oneof(
            fc.jsonValue({ maxDepth: 2 }),
            fc.tuple(fc.string({ maxLength: 4 }), fc.integer({ min: -2, max: 3 })),
          ),
        ),
      }),
      { maxKeys: 6 },
    ),
    client_id: fc.string({ maxLength: 20 }),
  }),
);

const v1JobArb = fc.record({
  user: fc.constantFrom('bob', 'ghost', '../carol', 'BOB', ''),
  prompt: fc.oneof(
    fc.jsonValue({ maxDepth: 3 }),
    fc.dictionary(
      fc.string({ maxLength: 6 }),
      fc.record({
        class_type: fc.string({ maxLength: 10 }),
        inputs: fc.dictionary(fc.string({ maxLength: 4 }), fc.jsonValue({ maxDepth: 2 })),
      }),
      { maxKeys: 4 },
    ),
  ),
  priority: fc.option(fc.constantFrom('low', 'normal', 'high', 'instructor', 'god'), { nil: undefined }),
});

const multipartArb = fc.tuple(
  fc.constantFrom('b', 'Boundary42', '', '"quoted"', '-'.repeat(80)),
  fc.array(
    fc.oneof(
      fc.constantFrom(
        '--Boundary42\r\n',
        '\r\n',
        'Content-Disposition: form-data; name="image"; filename="a.png"\r\n',
        'Content-Disposition: form-data; name="subfolder"\r\n',
        '\r\n\r\n',
        '--Boundary42--',
        '..%2f',
        'filename="../../x"',
      ),
      fc.string({ maxLength: 30 }),
    ),
    { maxLength: 12 },
  ),
);

/** The answer is one we meant: below 500, and a 4xx body says what was wrong. */
function judge(r: HttpResult | null): string | null {
  if (!r) return 'no answer';
  if (r.status >= 500) return `status ${r.status}: ${r.body.subarray(0, 200).toString()}`;
  if (r.status >= 400 && r.body.length === 0 && ![404, 405, 431].includes(r.status))
    return `empty ${r.status} body`;
  if (/at .+\.(ts|js):\d+:\d+/.test(r.body.toString('utf8'))) return 'stack trace in the body';
  return null;
}

async function send(
  ctx: Ctx,
  name: string,
  method: string,
  path: string,
  as: Parameters<Ctx['headers']>[0],
  body?: Buffer,
  headers: Record<string, string> = {},
): Promise<Outcome> {
  const out = await rawExchange(
    ctx.port,
    [requestBytes(method, path, ctx.host, { ...ctx.headers(as), ...headers }, body)],
    15_000,
  );
  const complaint = judge(out.result);
  return {
    name,
    complaint,
    status: out.result?.status ?? 0,
    undeclared5xx: (out.result?.status ?? 0) >= 500,
  };
}

/** Runs the seeded random requests; every outcome is reported like a corpus case. */
export async function runFuzz(
  ctx: Ctx,
  counts = { paths: 200, prompts: 150, jobs: 80, uploads: 80 },
): Promise<Outcome[]> {
  const paths = fc.sample(pathArb, { seed: FUZZ_SEED, numRuns: counts.paths });
  const prompts = fc.sample(promptArb, { seed: FUZZ_SEED + 1, numRuns: counts.prompts });
  const jobs = fc.sample(v1JobArb, { seed: FUZZ_SEED + 2, numRuns: counts.jobs });
  const forms = fc.sample(multipartArb, { seed: FUZZ_SEED + 3, numRuns: counts.uploads });
  const tasks: (() => Promise<Outcome>)[] = [
    ...paths.map((p, i) => () => send(ctx, `fuzz path #${i}: GET ${p.slice(0, 120)}`, 'GET', p, 'alice')),
    ...prompts.map(
      (p, i) => () =>
        send(
          ctx,
          `fuzz prompt #${i}`,
          'POST',
          '/alice/api/prompt',
          'alice',
          Buffer.from(JSON.stringify(p) ?? 'null'),
          { 'content-type': 'application/json' },
        ),
    ),
    ...jobs.map(
      (j, i) => () =>
        send(ctx, `fuzz v1 job #${i}`, 'POST', '/api/v1/jobs', 'api', Buffer.from(JSON.stringify(j)), {
          'content-type': 'application/json',
        }),
    ),
    ...forms.map(
      ([b, parts], i) =>
        () =>
          send(
            ctx,
            `fuzz upload #${i} (boundary ${JSON.stringify(b).slice(0, 20)})`,
            'POST',
            '/alice/upload/image',
            'alice',
            Buffer.from(parts.join('')),
            { 'content-type': `multipart/form-data; boundary=${b}` },
          ),
    ),
  ];
  const out: Outcome[] = new Array(tasks.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: 6 }, async () => {
      while (next < tasks.length) {
        const i = next++;
        out[i] = await tasks[i]!();
      }
    }),
  );
  return out;
}
