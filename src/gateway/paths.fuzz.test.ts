/**
 * Fuzzing the path-taking routes over HTTP (issue 10): random, percent-encoded paths with `..`,
 * `%2e`, NUL, unicode and long names to userdata (read, write, move, delete), `/view` and the
 * upload subfolder. Never a 5xx, and nothing is written outside user001's own space.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHarness, storedFiles, tinyPng, upload, type Harness } from '../../test/support/gateway-kit.js';

let h: Harness;
let A: string;

beforeAll(async () => {
  h = await startHarness();
  A = await h.addUser('user001');
  await h.addUser('user002');
}, 60_000);

afterAll(async () => {
  await h.close();
});

const piece = fc.oneof(
  fc.constantFrom(
    '..',
    '.',
    '/',
    '\\',
    '%2e',
    '%2f',
    '%5c',
    '%00',
    '%',
    '%25',
    'user002',
    'a',
    'é',
    '😀',
    '\u0000',
  ),
  fc.string({ maxLength: 6 }),
  fc.nat(300).map((n) => 'y'.repeat(n)),
);
const rawPath = fc.array(piece, { minLength: 1, maxLength: 8 }).map((ps) => ps.join(''));
/** How the path reaches the URL: encoded once (as the frontend does), twice, or as is. */
const encoding = fc.constantFrom('once', 'twice', 'raw');
const enc = (p: string, how: string) =>
  how === 'once'
    ? encodeURIComponent(p)
    : how === 'twice'
      ? encodeURIComponent(encodeURIComponent(p))
      : p.replaceAll('?', '%3F').replaceAll('#', '%23');

describe('path-taking routes under fuzzing', () => {
  it('never answer 5xx and never write outside the user space', async () => {
    await fc.assert(
      fc.asyncProperty(
        rawPath,
        rawPath,
        encoding,
        fc.constantFrom('get', 'post', 'delete', 'move', 'view', 'list', 'v2', 'upload'),
        async (p, q, how, op) => {
          const a = enc(p, how);
          const base = '/user001/api';
          let r;
          if (op === 'upload') {
            r = await upload(
              h.app,
              A,
              `${base}/upload/image`,
              { subfolder: p },
              { name: 'f.png', body: tinyPng(1) },
            );
          } else {
            const url = {
              get: `${base}/userdata/${a}`,
              post: `${base}/userdata/${a}`,
              delete: `${base}/userdata/${a}`,
              move: `${base}/userdata/${a}/move/${enc(q, how)}`,
              view: `${base}/view?filename=${encodeURIComponent(p)}&subfolder=${encodeURIComponent(q)}&type=input`,
              list: `${base}/userdata?dir=${encodeURIComponent(p)}`,
              v2: `${base}/v2/userdata?path=${encodeURIComponent(p)}`,
            }[op];
            const method = op === 'post' || op === 'move' ? 'POST' : op === 'delete' ? 'DELETE' : 'GET';
            try {
              r = await h.app.inject({
                method,
                url,
                headers: { authorization: A, 'content-type': 'application/json' },
                ...(method === 'POST' ? { payload: '{}' } : {}),
              });
            } catch (err) {
              // light-my-request refuses some URLs (invalid characters) before they reach us.
              expect(String(err)).toMatch(/Invalid|URL|character/i);
              return;
            }
          }
          expect(r.statusCode, `${op} ${p} → ${r.body.slice(0, 200)}`).toBeLessThan(500);
        },
      ),
      { numRuns: 600 },
    );
    for (const f of await storedFiles(h)) expect(f.startsWith('user001/'), f).toBe(true);
  }, 120_000);
});
