/**
 * The docs' commands work when pasted:
 * - every `comfy-multi …` in README.md and docs/*.md names a real command with real options;
 * - the blocks of docs/runbook.md marked `<!-- ci: run -->` run in order, as one instructor's
 *   shell session, in an empty folder with `comfy-multi` on PATH (as `npm link` puts it), against
 *   the real server started by the `<!-- ci: serve -->` block. The only edit: the example host
 *   `https://workshop.example.org` becomes this machine's loopback address and a free port.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildProgram } from '../../src/cli/program.js';
import { freePort } from '../support/redis-server.js';
import { REPO, checkInvocation, docFiles, invocations, shellBlocks } from './doc-blocks.js';

describe('comfy-multi commands in the docs', () => {
  it('name real commands and options', () => {
    const program = buildProgram();
    const all = docFiles().flatMap((f) => shellBlocks(f).flatMap(invocations));
    expect(all.length).toBeGreaterThan(20);
    const wrong = all
      .map((inv) => ({ inv, why: checkInvocation(program, inv.args) }))
      .filter((r) => r.why !== null)
      .map((r) => `${r.inv.where}: comfy-multi ${r.inv.args.join(' ')} — ${r.why}`);
    expect(wrong).toEqual([]);
  });

  it('catch a command or option that does not exist', () => {
    const program = buildProgram();
    expect(checkInvocation(program, ['users', 'init', '--count', '20'])).toBeNull();
    expect(checkInvocation(program, ['users', 'frobnicate'])).toMatch(/no command 'users frobnicate'/);
    expect(checkInvocation(program, ['doctor', '--fix'])).toMatch(/no option --fix/);
    expect(checkInvocation(program, ['users'])).toMatch(/needs a subcommand/);
  });
});

describe('docs/runbook.md, pasted', () => {
  let dir: string;
  let server: ChildProcess | undefined;
  let serverLog = '';
  let port: number;
  const blocks = shellBlocks('docs/runbook.md');

  const env = (): NodeJS.ProcessEnv => {
    // The instructor's shell: no settings of ours inherited from the test run, comfy-multi on PATH.
    const clean = Object.fromEntries(
      Object.entries(process.env).filter(
        ([k]) =>
          !/^(DATA_DIR|PORT|PUBLIC_URL|STORE|FILES|REDIS_URL|ADMIN_PASSWORD|COMFY_MULTI_|TLS_|S3_|BACKUP_)/.test(
            k,
          ),
      ),
    );
    return { ...clean, PATH: `${join(dir, 'bin')}:${process.env.PATH}`, HOME: dir, PORT: String(port) };
  };
  const local = (text: string) => text.replaceAll('https://workshop.example.org', `http://127.0.0.1:${port}`);

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cm-runbook-'));
    port = await freePort();
    await mkdir(join(dir, 'bin'));
    await symlink(join(REPO, 'bin/comfy-multi.js'), join(dir, 'bin/comfy-multi'));
  });

  afterAll(async () => {
    if (server && server.exitCode === null) {
      server.kill('SIGTERM');
      await new Promise((r) => server!.once('exit', r));
    }
    await rm(dir, { recursive: true, force: true });
  });

  it('has the blocks this test runs', () => {
    expect(blocks.filter((b) => b.ci === 'serve')).toHaveLength(1);
    expect(blocks.filter((b) => b.ci === 'run').length).toBeGreaterThanOrEqual(6);
  });

  it('runs every marked block in order, against a real server', { timeout: 180_000 }, async () => {
    const serveAt = blocks.findIndex((b) => b.ci === 'serve');
    const before = blocks.slice(0, serveAt).filter((b) => b.ci === 'run');
    const after = blocks.slice(serveAt + 1).filter((b) => b.ci === 'run');
    const script = (list: typeof blocks) =>
      ['set -euo pipefail', ...list.map((b) => `echo "::block ${b.file}:${b.line}"\n${local(b.text)}`)].join(
        '\n',
      );
    const run = (text: string) =>
      new Promise<{ code: number | null; out: string }>((resolve) => {
        const child = spawn('bash', ['-c', text], {
          cwd: dir,
          env: env(),
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let out = '';
        child.stdout.on('data', (d: Buffer) => (out += d.toString()));
        child.stderr.on('data', (d: Buffer) => (out += d.toString()));
        child.on('exit', (code) => resolve({ code, out }));
      });

    const setup = await run(script(before));
    expect(setup.code, setup.out).toBe(0);

    const serve = blocks[serveAt]!;
    server = spawn('bash', ['-c', `exec ${local(serve.text).trim()}`], {
      cwd: dir,
      env: env(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    server.stdout!.on('data', (d: Buffer) => (serverLog += d.toString()));
    server.stderr!.on('data', (d: Buffer) => (serverLog += d.toString()));
    const t0 = Date.now();
    for (;;) {
      const ok = await fetch(`http://127.0.0.1:${port}/health`).then(
        (r) => r.ok,
        () => false,
      );
      if (ok) break;
      if (server.exitCode !== null || Date.now() - t0 > 30_000)
        throw new Error(`the runbook's server did not start:\n${serverLog}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    // The settings block wrote PUBLIC_URL into .env, and the server read it from there.
    expect(serverLog).toContain(`Links and login cards use http://127.0.0.1:${port} (PUBLIC_URL)`);

    const day = await run(script(after));
    expect(day.code, day.out).toBe(0);

    // What the instructor was told would happen, did.
    const participants = readFileSync(join(dir, 'data/participants.txt'), 'utf8');
    for (const n of ['user001', 'user007', 'user020']) expect(participants).toContain(n);
    expect(existsSync(join(dir, 'data/login-cards.html'))).toBe(true);
    expect(readFileSync(join(dir, 'card-user007.html'), 'utf8')).toContain('user007');
    expect(day.out).toMatch(/gpu1[\s\S]*gpu2/);
    expect((await readdir(join(dir, 'backups'))).length).toBeGreaterThan(0);
    // Every block ran (the markers are echoed before each).
    expect(day.out.match(/::block /g)).toHaveLength(after.length);
  });
});
