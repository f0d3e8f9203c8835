/**
 * Backup and restore against a real S3-compatible server (s3rver, a child process on a free port):
 *
 * - round trip of a 20-participant workshop (workflows and settings in userdata, history in the
 *   store, uploads, outputs including a file over 50 MB) → backup → wipe → restore → every record
 *   and file identical, on SQLite (files in DATA_DIR) and on Redis (files in a bucket);
 * - incremental: after changing one file the next backup sends exactly one object;
 * - a backup killed (SIGKILL) in the middle of a large upload leaves the previous snapshot intact,
 *   and the next backup completes;
 * - wrong credentials, a missing bucket, an unreachable endpoint: a clear error, exit code 3, and
 *   nothing half-written locally (the CLI, as a child process);
 * - restore refuses a non-empty data folder without --force (exit 5).
 */
import { execFile, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { S3RVER_CREDENTIALS, startS3Server, type S3ServerHandle } from '../../test/support/s3-server.js';
import { loadConfig } from '../config/load-config.js';
import type { Config } from '../config/schema.js';
import type { FileStore } from '../files/file-store.js';
import { openFileStore } from '../files/index.js';
import { userFileKey } from '../files/safe-path.js';
import { openStore } from '../store/index.js';
import { collectRecords, comparableRecords } from '../store/state-export.conformance.js';
import type { JobStore, StateRecord } from '../store/types.js';
import { runBackup } from './backup.js';
import { EXIT } from './errors.js';
import { listSnapshots, readManifest } from './manifest.js';
import { runRestore } from './restore.js';
import { openTarget } from './target.js';
import { setProcessEnv } from '../../test/support/process-env.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const MiB = 1024 * 1024;
const T0 = 1_700_000_000_000;
const redisUrl = inject('redisUrl');

let s3: S3ServerHandle;
let root: string;
let restoreEnv: (() => void) | undefined;

beforeAll(async () => {
  s3 = await startS3Server({ buckets: ['backups', 'files'] });
  root = mkdtempSync(path.join(tmpdir(), 'cm-backup-s3-'));
  // The S3 file store (FILES=s3) takes its credentials from the standard AWS variables.
  restoreEnv = setProcessEnv({ AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER' });
});

afterAll(async () => {
  restoreEnv?.();
  await s3?.stop();
  if (root) rmSync(root, { recursive: true, force: true });
});

/** The environment of a deployment whose backups go to the test server. */
function envFor(dataDir: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    LOG_LEVEL: 'silent',
    DATA_DIR: dataDir,
    BACKUP_S3_ENDPOINT: s3.endpoint,
    BACKUP_S3_REGION: 'us-east-1',
    BACKUP_S3_FORCE_PATH_STYLE: 'true',
    BACKUP_S3_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId,
    BACKUP_S3_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey,
    ...extra,
  };
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** A lazily generated file of `size` bytes (never all in memory) and its sha256. */
function bigFile(size: number, seed: number): { stream: () => Readable; sha256: string } {
  const chunk = (i: number) => {
    const len = Math.min(MiB, size - i * MiB);
    const b = Buffer.alloc(len);
    for (let o = 0; o + 4 <= len; o += 4) b.writeUInt32LE(((i * 2654435761) ^ (o * 97) ^ seed) >>> 0, o);
    return b;
  };
  const n = Math.ceil(size / MiB);
  const h = createHash('sha256');
  for (let i = 0; i < n; i++) h.update(chunk(i));
  return {
    sha256: h.digest('hex'),
    stream: () =>
      Readable.from(
        (function* () {
          for (let i = 0; i < n; i++) yield chunk(i);
        })(),
      ),
  };
}

/** Every file but temp ones: key → size:sha256. */
async function fileDigests(files: FileStore): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const f of await files.list('')) {
    if (f.key.split('/')[1] === 'temp') continue;
    const h = createHash('sha256');
    for await (const c of await files.read(f.key)) h.update(c as Buffer);
    out[f.key] = `${f.size}:${h.digest('hex')}`;
  }
  return out;
}

/**
 * A workshop after a day's work: 20 participants with accounts, a settings file and two
 * workflows each (userdata), uploads (input), three finished jobs with outputs (output) and one
 * waiting, a temp preview (not backed up), a 52 MiB video for user007, and DATA_DIR extras.
 */
async function buildWorkshop(config: Config, store: JobStore, files: FileStore): Promise<void> {
  await store.updateSettings({ mode: 'round_robin', limits: { maxPendingPerUser: 20 } });
  const users = Array.from({ length: 20 }, (_, i) => `user${String(i + 1).padStart(3, '0')}`);
  await store.putAccount({
    name: 'admin',
    role: 'instructor',
    passwordHash: '$2a$10$admin',
    createdAt: T0,
    passwordVersion: 1,
  });
  for (const [i, u] of users.entries()) {
    await store.putAccount({
      name: u,
      role: 'participant',
      passwordHash: `$2a$10$${u}`,
      createdAt: T0 + i,
      passwordVersion: 1,
    });
    await store.putBlob('settings', u, JSON.stringify({ 'Comfy.Locale': 'de', user: u }));
    await files.write(
      userFileKey(u, 'userdata', 'comfy.settings.json'),
      Buffer.from(JSON.stringify({ theme: 'dark', i })),
    );
    await files.write(
      userFileKey(u, 'userdata', 'workflows', 'portrait.json'),
      Buffer.from(JSON.stringify({ nodes: [i] })),
    );
    await files.write(
      userFileKey(u, 'userdata', 'workflows', `mein Ablauf ${i} ü.json`),
      Buffer.from(`{"n":${i}}`),
    );
    await files.write(userFileKey(u, 'input', `upload ${i}.png`), randomBytes(3000 + i * 50));
    await files.write(userFileKey(u, 'temp', 'preview.png'), randomBytes(500));
    for (let j = 0; j < 3; j++) {
      await store.enqueue(
        { user: u, prompt: { '3': { class_type: 'KSampler', inputs: { seed: j } } }, metadata: { j } },
        T0 + j,
      );
    }
  }
  for (let n = 0; n < 60; n++) {
    const job = await store.claim({
      workerId: `gpu${n % 3}`,
      warmModels: [],
      leaseMs: 30_000,
      now: T0 + 1000 + n,
      affinity: { window: 1, maxSkips: 2 },
    });
    if (!job) break;
    if (n % 7 === 6) {
      await store.fail(
        job.id,
        job.attempts,
        { reason: 'execution_error', message: 'OOM', nodeId: '3' },
        T0 + 2000 + n,
      );
      continue;
    }
    const name = `ComfyUI_${String(n).padStart(5, '0')}_.png`;
    const body = randomBytes(20_000 + n * 100);
    await files.write(userFileKey(job.user, 'output', job.id, name), body);
    await store.complete(
      job.id,
      job.attempts,
      [
        {
          nodeId: '9',
          filename: name,
          subfolder: job.id,
          type: 'output',
          kind: 'images',
          size: body.length,
          sha256: sha256(body),
        },
      ],
      T0 + 2000 + n,
    );
  }
  for (const u of users)
    await store.enqueue({ user: u, prompt: { '3': { class_type: 'KSampler', inputs: {} } } }, T0 + 5000);
  const video = bigFile(52 * MiB + 4321, 7);
  await files.write(userFileKey('user007', 'output', 'job-video', 'clip 01.mp4'), video.stream());
  mkdirSync(config.DATA_DIR, { recursive: true });
  writeFileSync(
    path.join(config.DATA_DIR, 'participants.txt'),
    users.map((u) => `${u}\tpw-${u}`).join('\n'),
    { mode: 0o600 },
  );
  writeFileSync(path.join(config.DATA_DIR, 'htpasswd'), 'admin:$2a$10$x\n', { mode: 0o600 });
}

interface Observed {
  records: StateRecord[];
  files: Record<string, string>;
  extras: Record<string, string>;
}

async function observe(config: Config, store: JobStore, files: FileStore): Promise<Observed> {
  const extras: Record<string, string> = {};
  for (const name of ['participants.txt', 'htpasswd'])
    extras[name] = readFileSync(path.join(config.DATA_DIR, name), 'utf8');
  return { records: comparableRecords(await collectRecords(store)), files: await fileDigests(files), extras };
}

async function deleteRedisKeys(store: JobStore, prefix: string): Promise<void> {
  const client = (
    store as unknown as {
      client: { keys(p: string): Promise<string[]>; unlink(...k: string[]): Promise<number> };
    }
  ).client;
  const keys = await client.keys(`${prefix}*`);
  for (let i = 0; i < keys.length; i += 500) await client.unlink(...keys.slice(i, i + 500));
}

describe.each([
  { backend: 'sqlite', files: 'local' },
  { backend: 'redis', files: 's3' },
] as const)('round trip: state on $backend, files $files', ({ backend, files: filesBackend }) => {
  it(
    '20 participants → backup → wipe → restore: every record and file identical; then incremental',
    { timeout: 120_000 },
    async () => {
      const dataDir = path.join(root, `rt-${backend}`);
      const prefix = `test:backup:${process.pid}:${Date.now().toString(36)}:`;
      const filesPrefix = `rt-${backend}-${Date.now().toString(36)}/`;
      const env = envFor(dataDir, {
        STORE: backend,
        ...(backend === 'redis' ? { REDIS_URL: redisUrl, REDIS_PREFIX: prefix } : {}),
        ...(filesBackend === 's3'
          ? {
              FILES: 's3',
              S3_BUCKET: 'files',
              S3_PREFIX: filesPrefix,
              S3_ENDPOINT: s3.endpoint,
              S3_REGION: 'us-east-1',
              S3_FORCE_PATH_STYLE: 'true',
            }
          : {}),
      });
      const config = loadConfig(env);
      let store = await openStore(config);
      let files = await openFileStore(config);
      const spec = `s3://backups/rt-${backend}/`;
      const target = await openTarget(spec, config);
      try {
        await buildWorkshop(config, store, files);
        const before = await observe(config, store, files);
        expect(Object.keys(before.files).length).toBeGreaterThan(20 * 5);
        expect(before.records.filter((r) => r.type === 'job').length).toBe(80);

        const first = await runBackup({ store, files, target, dataDir, toolVersion: 'test' });
        expect(first).toMatchObject({ files: Object.keys(before.files).length, extras: 2 });
        expect(first.state.kind).toBe(backend === 'sqlite' ? 'sqlite' : 'jsonl');
        const manifest = await readManifest(target.files, first.id);
        expect(manifest.files.find((f) => f.key.endsWith('clip 01.mp4'))?.size).toBe(52 * MiB + 4321);

        // Wipe everything: the machine is gone.
        if (backend === 'redis') await deleteRedisKeys(store, prefix);
        await store.close();
        if (filesBackend === 's3') for (const f of await files.list('')) await files.delete(f.key);
        files.close?.();
        rmSync(dataDir, { recursive: true, force: true });

        const printed: string[] = [];
        const restored = await runRestore({ config, target, print: (l) => printed.push(l) });
        expect(restored).toMatchObject({ snapshot: first.id, files: manifest.files.length, extras: 2 });
        expect(restored.state.counts).toMatchObject({ jobs: 80, accounts: 21 });
        expect(printed.join('\n')).toMatch(/every checksum verified/);
        store = await openStore(config);
        files = await openFileStore(config);
        const after = await observe(config, store, files);
        expect(after.files).toEqual(before.files);
        expect(after.extras).toEqual(before.extras);
        expect(after.records).toEqual(before.records);
        // The restored store works: the waiting jobs are claimed in the same fair order.
        const next = await store.claim({
          workerId: 'gpu',
          warmModels: [],
          leaseMs: 30_000,
          now: T0 + 9000,
          affinity: { window: 1, maxSkips: 2 },
        });
        expect(next?.status).toBe('running');

        // Incremental: change one workflow, the next backup sends exactly that one object.
        const objectsBefore = new Set((await target.files.list('objects')).map((f) => f.key));
        await files.write(
          userFileKey('user003', 'userdata', 'workflows', 'portrait.json'),
          Buffer.from('{"nodes":["edited"]}'),
        );
        const second = await runBackup({ store, files, target, dataDir, toolVersion: 'test' });
        expect(second.uploadedFiles).toBe(1);
        // Restored local files keep their times, so only the changed file is read again.
        if (filesBackend === 'local') expect(second.hashedFiles).toBe(1);
        const added = (await target.files.list('objects'))
          .map((f) => f.key)
          .filter((k) => !objectsBefore.has(k) && !k.endsWith('.state.gz'));
        expect(added).toEqual([`objects/${sha256(Buffer.from('{"nodes":["edited"]}'))}`]);
        expect(await listSnapshots(target.files)).toEqual([first.id, second.id]);
      } finally {
        if (backend === 'redis') await deleteRedisKeys(store, prefix).catch(() => undefined);
        await store.close();
        files.close?.();
        target.close();
      }
    },
  );
});

// ---- the CLI, as an operator runs it ----------------------------------------------------------

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

function cli(args: string[], env: Record<string, string>): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', 'src/cli/index.ts', ...args],
      {
        cwd: REPO,
        env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
        timeout: 60_000,
      },
      (err, stdout, stderr) => {
        const code = err ? ((err as { code?: number | string }).code as number | null) : 0;
        resolve({ code: typeof code === 'number' ? code : null, stdout, stderr });
      },
    );
  });
}

/** A small deployment (SQLite, local files) for the CLI tests. */
async function smallDeployment(name: string): Promise<{ dataDir: string; env: Record<string, string> }> {
  const dataDir = path.join(root, name, 'data');
  const tmp = path.join(root, name, 'tmp');
  mkdirSync(tmp, { recursive: true });
  const env = envFor(dataDir, { TMPDIR: tmp });
  const config = loadConfig(env);
  const store = await openStore(config);
  const files = await openFileStore(config);
  await store.putAccount({
    name: 'admin',
    role: 'instructor',
    passwordHash: 'h',
    createdAt: T0,
    passwordVersion: 1,
  });
  await store.enqueue({ user: 'user001', prompt: { '1': { class_type: 'X', inputs: {} } } }, T0);
  await files.write('user001/input/a.png', randomBytes(5000));
  await files.write('user001/userdata/workflows/w.json', Buffer.from('{}'));
  await store.close();
  return { dataDir, env };
}

/** Multipart parts of at least 8 MiB that s3rver has received (its own layout: uploads/<id>/<n>). */
function completedParts(dir: string): number {
  let n = 0;
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const full = path.join(d, e.name);
      if (e.isDirectory()) walk(full);
      else if (/^\d+$/.test(e.name) && statSync(full).size >= 8 * MiB) n++;
    }
  };
  walk(dir);
  return n;
}

/** Every file under a folder, relative, with its size (to prove nothing changed). */
function tree(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const full = path.join(d, e.name);
      if (e.isDirectory()) walk(full);
      else out.push(`${path.relative(dir, full)}:${readFileSync(full).length}`);
    }
  };
  walk(dir);
  return out.sort();
}

describe('comfy-multi backup / restore (CLI)', () => {
  it(
    'wrong credentials, a missing bucket, an unreachable endpoint: clear errors, exit 3, nothing half-written',
    { timeout: 90_000 },
    async () => {
      const { dataDir, env } = await smallDeployment('errors');
      const before = tree(dataDir);
      const fresh = path.join(root, 'errors', 'fresh');
      const cases: { env: Record<string, string>; to: string; match: RegExp }[] = [
        {
          env: { BACKUP_S3_ACCESS_KEY_ID: 'NOT-A-KEY' },
          to: 's3://backups/err/',
          match: /credentials were refused.*InvalidAccessKeyId/s,
        },
        { env: {}, to: 's3://no-such-bucket/x/', match: /bucket does not exist/ },
        {
          env: { BACKUP_S3_ENDPOINT: 'http://127.0.0.1:9' },
          to: 's3://backups/err/',
          match: /cannot be reached.*ECONNREFUSED/s,
        },
      ];
      const runs = [
        ...cases.map((c) => ({ c, run: cli(['backup', '--to', c.to], { ...env, ...c.env }) })),
        // Restores of the first two onto a fresh machine (the third fails the same way as a backup).
        ...cases
          .slice(0, 2)
          .map((c) => ({ c, run: cli(['restore', '--from', c.to], { ...env, ...c.env, DATA_DIR: fresh }) })),
      ];
      for (const { c, run } of runs) {
        const r = await run;
        expect(r.code, `${c.to}: ${r.stderr}`).toBe(EXIT.TARGET);
        expect(r.stderr).toMatch(/^error: cannot use the backup target/m);
        expect(r.stderr).toMatch(c.match);
        expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
      }
      expect(tree(dataDir)).toEqual(before);
      expect(existsSync(fresh)).toBe(false);
      expect(readdirSync(path.join(root, 'errors')).sort()).toEqual(['data', 'tmp']);
      // No temporary state snapshot left behind (tsx keeps its own cache there).
      expect(
        readdirSync(path.join(root, 'errors', 'tmp')).filter((n) => n.startsWith('comfy-multi')),
      ).toEqual([]);
    },
  );

  it(
    'restore refuses a non-empty data folder without --force (exit 5) and changes nothing',
    { timeout: 60_000 },
    async () => {
      const { dataDir, env } = await smallDeployment('refuse');
      const to = 's3://backups/refuse/';
      const config = loadConfig(env);
      const target = await openTarget(to, config);
      try {
        const store = await openStore(config);
        const files = await openFileStore(config);
        await runBackup({ store, files, target, dataDir, toolVersion: 'test' });
        await store.close();
        const before = tree(dataDir);
        const refused = await cli(['restore', '--from', to], env);
        expect(refused.code).toBe(EXIT.NOT_EMPTY);
        expect(refused.stderr).toMatch(/refusing to restore over data that exists: the data folder/);
        expect(refused.stderr).toMatch(/--force/);
        expect(tree(dataDir)).toEqual(before);
        const forced = await runRestore({ config, target, force: true });
        expect(forced.movedAside).toMatch(/\.before-restore-/);
        expect(tree(dataDir).filter((f) => !f.startsWith('comfy-multi.db'))).toEqual(
          before.filter((f) => !f.startsWith('comfy-multi.db')),
        );
      } finally {
        target.close();
      }
    },
  );

  it(
    'a backup killed during a large upload leaves the previous snapshot intact; the next one completes',
    { timeout: 120_000 },
    async () => {
      const { dataDir, env } = await smallDeployment('kill');
      const to = 's3://backups/kill/';
      const config = loadConfig(env);
      const target = await openTarget(to, config);
      const store = await openStore(config);
      const files = await openFileStore(config);
      try {
        const a = await runBackup({ store, files, target, dataDir, toolVersion: 'test' });
        const objectsA = (await target.files.list('objects')).map((f) => f.key).sort();

        // A big new output, then a backup (the CLI, a child process) killed while it uploads it.
        const video = bigFile(60 * MiB, 3);
        await files.write('user001/output/job9/render.mp4', video.stream());
        const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/index.ts', 'backup', '--to', to], {
          cwd: REPO,
          env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let stderr = '';
        child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
        const exited = new Promise((r) => child.once('exit', r));
        // Kill it once the upload is under way: the first multipart part has reached the server.
        const deadline = Date.now() + 60_000;
        while (!/uploading user001\/output\/job9\/render\.mp4/.test(stderr) || completedParts(s3.dir) < 1) {
          if (child.exitCode !== null) throw new Error(`the backup ended before it was killed:\n${stderr}`);
          if (Date.now() > deadline) throw new Error(`the upload never started:\n${stderr}`);
          await new Promise((r) => setTimeout(r, 10));
        }
        child.kill('SIGKILL');
        await exited;

        // The previous snapshot is the only one, complete, and restores.
        expect(await listSnapshots(target.files)).toEqual([a.id]);
        const objects = (await target.files.list('objects')).map((f) => f.key);
        expect(objects).not.toContain(`objects/${video.sha256}`);
        for (const k of objectsA) expect(objects).toContain(k);
        const drillA = loadConfig({ ...env, DATA_DIR: path.join(root, 'kill', 'drill-a') });
        expect(await runRestore({ config: drillA, target, snapshot: a.id })).toMatchObject({
          snapshot: a.id,
          files: 2,
        });
        expect(tree(path.join(drillA.DATA_DIR, 'files'))).toEqual(
          tree(path.join(dataDir, 'files')).filter((f) => !f.includes('render.mp4')),
        );

        // The next backup completes and holds the big file.
        const c = await runBackup({ store, files, target, dataDir, toolVersion: 'test' });
        expect(await listSnapshots(target.files)).toEqual([a.id, c.id]);
        expect(
          (await readManifest(target.files, c.id)).files.find((f) => f.key.endsWith('render.mp4')),
        ).toMatchObject({
          sha256: video.sha256,
        });
        const drillC = loadConfig({ ...env, DATA_DIR: path.join(root, 'kill', 'drill-c') });
        await runRestore({ config: drillC, target });
        expect(await fileDigests(await openFileStore(drillC))).toEqual(await fileDigests(files));
      } finally {
        await store.close();
        target.close();
      }
    },
  );
});
