/**
 * scripts/dockerfile-lint.sh: the repository's Dockerfiles pass, and each rule catches its mistake.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const dir = mkdtempSync(join(tmpdir(), 'cm-dockerfile-lint-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function lint(...files: string[]): { code: number | null; out: string } {
  const r = spawnSync('bash', [join(ROOT, 'scripts/dockerfile-lint.sh'), ...files], {
    cwd: ROOT,
    encoding: 'utf8',
  });
  return { code: r.status, out: r.stdout + r.stderr };
}

function lintText(text: string): { code: number | null; out: string } {
  const file = join(dir, `Dockerfile.${Math.random().toString(36).slice(2)}`);
  writeFileSync(file, text);
  return lint(file);
}

const GOOD_TAIL = 'USER 10001\nHEALTHCHECK CMD ["true"]\nCMD ["node", "x.js"]\n';

describe('dockerfile-lint', () => {
  it('passes the control plane and GPU Dockerfiles', () => {
    const r = lint('Dockerfile', 'deploy/gpu/Dockerfile');
    expect(r.code, r.out).toBe(0);
  });

  it('passes a minimal good Dockerfile, stages and ARG-named bases included', () => {
    const r = lintText(`ARG BASE=debian:12-slim\nFROM \${BASE} AS b\nFROM b\n${GOOD_TAIL}`);
    expect(r.code, r.out).toBe(0);
  });

  it.each([
    ['FROM node\n', 'FROM node: no tag'],
    ['FROM debian:latest\n', "'latest' is not a pin"],
    ['ARG B\nFROM ${B}\n', 'ARG B has no default'],
    ['FROM debian:12\nRUN apt-get update && apt-get install -y curl\n', 'without --no-install-recommends'],
    [
      'FROM debian:12\nRUN apt-get install -y --no-install-recommends curl\n',
      'without removing /var/lib/apt/lists',
    ],
    ['FROM debian:12\nADD https://example.org/x /x\n', 'ADD from a URL'],
  ])('refuses %j', (head, message) => {
    const r = lintText(head + GOOD_TAIL);
    expect(r.code).toBe(1);
    expect(r.out).toContain(message);
  });

  it('refuses a final stage without USER, as root, without HEALTHCHECK, or with a shell-form CMD', () => {
    expect(lintText('FROM debian:12\nHEALTHCHECK CMD ["true"]\nCMD ["x"]\n').out).toContain('sets no USER');
    expect(lintText('FROM debian:12\nUSER root\nHEALTHCHECK CMD ["true"]\nCMD ["x"]\n').out).toContain(
      'runs as root',
    );
    expect(lintText('FROM debian:12\nUSER 1\nCMD ["x"]\n').out).toContain('no HEALTHCHECK');
    expect(lintText('FROM debian:12\nUSER 1\nHEALTHCHECK CMD ["true"]\nCMD node x\n').out).toContain(
      'use the exec form',
    );
  });
});
