/**
 * Backup and restore with folder targets (fast): layout, incremental sends, retention, verification
 * failures, refusal, the server's schedule, progress output and the configuration rules. The S3
 * round trips, killed backups and CLI exit codes are in backup.s3.test.ts.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, inject, it } from 'vitest';
import { ConfigError, loadConfig } from '../config/load-config.js';
import type { Config } from '../config/schema.js';
import type { FileStore } from '../files/file-store.js';
import { LocalFileStore } from '../files/local-file-store.js';
import { openStore } from '../store/index.js';
import { collectRecords, comparableRecords } from '../store/state-export.conformance.js';
import type { JobStore } from '../store/types.js';
import { runBackup } from './backup.js';
import { BackupError, EXIT } from './errors.js';
import { listSnapshots, manifestKey, objectKey, readManifest } from './manifest.js';
import { createProgress } from './progress.js';
import { runRestore } from './restore.js';
import { BACKUP_LEASE, startBackupSchedule } from './schedule.js';
import { MemoryClusterHub } from '../cluster/cluster-bus.js';
import { openTarget, parseTargetSpec, type BackupTarget } from './target.js';

let root: string;
let config: Config;
let store: JobStore;
let files: FileStore;
const T0 = 1_700_000_000_000;

const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

function cfg(env: Record<string, string>): Config {
  return loadConfig({ LOG_LEVEL: 'silent', ...env });
}

async function digests(fs: FileStore): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const f of await fs.list('')) {
    const chunks: Buffer[] = [];
    for await (const c of await fs.read(f.key)) chunks.push(c as Buffer);
    out[f.key] = sha(Buffer.concat(chunks));
  }
  return out;
}

async function populate(): Promise<void> {
  await store.putAccount({
    name: 'alice',
    role: 'participant',
    passwordHash: 'h',
    createdAt: T0,
    passwordVersion: 1,
  });
  for (const u of ['alice', 'bob']) {
    const j = await store.enqueue({ user: u, prompt: { '1': { class_type: 'X', inputs: {} } } }, T0);
    await files.write(`${u}/output/${j.id}/img.png`, Buffer.from(`${u} output`));
    await files.write(`${u}/input/upload.png`, Buffer.from(`${u} upload`));
    await files.write(`${u}/userdata/workflows/flow.json`, Buffer.from(`{"user":"${u}"}`));
    await files.write(`${u}/temp/preview.png`, Buffer.from('temporary'));
  }
  writeFileSync(path.join(config.DATA_DIR, 'participants.txt'), 'alice\tpw\n', { mode: 0o600 });
}

async function target(name = 'bk'): Promise<BackupTarget> {
  return openTarget(path.join(root, name), config);
}

beforeEach(async () => {
  root = mkdtempSync(path.join(tmpdir(), 'cm-backup-'));
  config = cfg({ DATA_DIR: path.join(root, 'data') });
  store = await openStore(config);
  files = new LocalFileStore(path.join(config.DATA_DIR, 'files'));
  await populate();
});

afterEach(async () => {
  await store.close();
  rmSync(root, { recursive: true, force: true });
});

describe('backup to a folder', () => {
  it('writes content-addressed objects and a manifest; leaves temp files out; restores identically', async () => {
    const t = await target();
    const r = await runBackup({ store, files, target: t, dataDir: config.DATA_DIR, toolVersion: 'test' });
    expect(r).toMatchObject({
      files: 6,
      uploadedFiles: 7,
      hashedFiles: 6,
      extras: 1,
      state: { kind: 'sqlite', uploaded: true },
    });
    const m = await readManifest(t.files, r.id);
    expect(m.files.map((f) => f.key).every((k) => !k.includes('/temp/'))).toBe(true);
    expect(m.extras.map((e) => e.name)).toEqual(['participants.txt']);
    expect(await listSnapshots(t.files)).toEqual([r.id]);
    for (const f of m.files) expect(existsSync(path.join(root, 'bk', objectKey(f.sha256)))).toBe(true);

    const before = { records: comparableRecords(await collectRecords(store)), files: await digests(files) };
    delete before.files['alice/temp/preview.png'];
    delete before.files['bob/temp/preview.png'];
    await store.close();
    rmSync(config.DATA_DIR, { recursive: true });
    const out: string[] = [];
    const res = await runRestore({ config, target: t, print: (l) => out.push(l) });
    expect(res).toMatchObject({ snapshot: r.id, files: 6, extras: 1, movedAside: null });
    store = await openStore(config);
    expect(comparableRecords(await collectRecords(store))).toEqual(before.records);
    expect(await digests(files)).toEqual(before.files);
    expect(readFileSync(path.join(config.DATA_DIR, 'participants.txt'), 'utf8')).toBe('alice\tpw\n');
    expect(out.join('\n')).toMatch(/restored snapshot .* into/);
    expect(readdirSync(root).filter((n) => n.includes('.restore-'))).toEqual([]);
  });

  it('is incremental: an unchanged file is neither read nor sent again; a changed one is', async () => {
    const t = await target();
    await runBackup({ store, files, target: t, dataDir: config.DATA_DIR, toolVersion: 'test' });
    await files.write('bob/userdata/workflows/flow.json', Buffer.from('{"changed":true}'));
    const r2 = await runBackup({ store, files, target: t, dataDir: config.DATA_DIR, toolVersion: 'test' });
    expect(r2).toMatchObject({ uploadedFiles: 1, hashedFiles: 1 });
    const r3 = await runBackup({ store, files, target: t, rehash: true, toolVersion: 'test' });
    expect(r3).toMatchObject({ uploadedFiles: 0, hashedFiles: 6 });
  });

  it('retention keeps the newest N snapshots and collects objects only old ones used', async () => {
    const t = await target();
    const r1 = await runBackup({ store, files, target: t, toolVersion: 'test' });
    const old = (await readManifest(t.files, r1.id)).files.find((f) => f.key === 'alice/input/upload.png')!;
    await files.write('alice/input/upload.png', Buffer.from('a new upload'));
    const r2 = await runBackup({ store, files, target: t, toolVersion: 'test' });
    const r3 = await runBackup({ store, files, target: t, keep: 1, toolVersion: 'test' });
    expect(r3.retention?.deletedSnapshots).toEqual([r1.id, r2.id]);
    expect(r3.retention?.deletedObjects).toBeGreaterThanOrEqual(1);
    expect(await listSnapshots(t.files)).toEqual([r3.id]);
    expect(await t.files.stat(objectKey(old.sha256))).toBeNull();
    // What remains restores.
    const dry = await runRestore({
      config: { ...config, DATA_DIR: path.join(root, 'fresh') },
      target: t,
      dryRun: true,
    });
    expect(dry).toMatchObject({ snapshot: r3.id, dryRun: true });
  });

  it('fails loudly on a damaged object, a damaged manifest or a missing object; nothing half-written', async () => {
    const t = await target();
    const r = await runBackup({ store, files, target: t, toolVersion: 'test' });
    const m = await readManifest(t.files, r.id);
    const fresh = { ...config, DATA_DIR: path.join(root, 'fresh') };
    const victim = m.files.find((f) => f.key === 'bob/input/upload.png')!;
    writeFileSync(path.join(root, 'bk', objectKey(victim.sha256)), 'bob uploaX'); // same size, other bytes
    const err = await runRestore({ config: fresh, target: t }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BackupError);
    expect((err as BackupError).exitCode).toBe(EXIT.VERIFY);
    expect((err as Error).message).toMatch(/bob\/input\/upload\.png.*checksum mismatch/);
    expect(existsSync(fresh.DATA_DIR)).toBe(false);
    expect(readdirSync(root).filter((n) => n.startsWith('fresh'))).toEqual([]);

    rmSync(path.join(root, 'bk', objectKey(victim.sha256)));
    const missing = await runRestore({ config: fresh, target: t, dryRun: true }).catch((e: unknown) => e);
    expect((missing as BackupError).exitCode).toBe(EXIT.VERIFY);
    expect((missing as Error).message).toMatch(/missing/);

    writeFileSync(path.join(root, 'bk', manifestKey(r.id)), '{"format":"comfy-multi-backup"');
    const bad = await runRestore({ config: fresh, target: t }).catch((e: unknown) => e);
    expect((bad as BackupError).exitCode).toBe(EXIT.VERIFY);
    const none = await runRestore({ config: fresh, target: t, snapshot: '20000101T000000Z-0000' }).catch(
      (e: unknown) => e,
    );
    expect((none as BackupError).exitCode).toBe(EXIT.VERIFY);
  });

  it('refuses a non-empty DATA_DIR without force; with force moves the old one aside', async () => {
    const t = await target();
    const r = await runBackup({ store, files, target: t, dataDir: config.DATA_DIR, toolVersion: 'test' });
    await store.close();
    const err = await runRestore({ config, target: t }).catch((e: unknown) => e);
    expect((err as BackupError).exitCode).toBe(EXIT.NOT_EMPTY);
    writeFileSync(path.join(config.DATA_DIR, 'marker'), 'old');
    const res = await runRestore({ config, target: t, force: true });
    expect(res.movedAside).toBe(`${config.DATA_DIR}.before-restore-${r.id}`);
    expect(readFileSync(path.join(res.movedAside!, 'marker'), 'utf8')).toBe('old');
    expect(existsSync(path.join(config.DATA_DIR, 'marker'))).toBe(false);
    store = await openStore(config);
    expect((await store.listAccounts()).map((a) => a.name)).toEqual(['alice']);
  });

  it('a missing folder cannot be restored from; one is created to back up into', async () => {
    const err = await runRestore({ config, target: await target('nope') }).catch((e: unknown) => e);
    expect((err as BackupError).exitCode).toBe(EXIT.TARGET);
    const r = await runBackup({ store, files, target: await target('new/deep'), toolVersion: 'test' });
    expect(r.files).toBe(6);
  });
});

describe('restore across state backends', () => {
  it('a SQLite snapshot restores into Redis, and a Redis snapshot into SQLite', async () => {
    const prefix = `test:backup-x:${process.pid}:${Date.now().toString(36)}:`;
    const redisEnv = { STORE: 'redis', REDIS_URL: inject('redisUrl'), REDIS_PREFIX: prefix };
    const records = comparableRecords(await collectRecords(store));
    const t = await target();
    await runBackup({ store, files, target: t, toolVersion: 'test' }); // kind sqlite

    const toRedis = cfg({ DATA_DIR: path.join(root, 'on-redis'), ...redisEnv });
    const r1 = await runRestore({ config: toRedis, target: t });
    expect(r1.state).toMatchObject({ kind: 'sqlite', into: 'redis' });
    const redis = await openStore(toRedis);
    try {
      expect(comparableRecords(await collectRecords(redis))).toEqual(records);
      const fromRedis = await runBackup({ store: redis, files, target: t, toolVersion: 'test' }); // kind jsonl
      expect(fromRedis.state.kind).toBe('jsonl');
      const toSqlite = cfg({ DATA_DIR: path.join(root, 'on-sqlite') });
      const r2 = await runRestore({ config: toSqlite, target: t });
      expect(r2.state).toMatchObject({ kind: 'jsonl', into: 'sqlite' });
      const back = await openStore(toSqlite);
      expect(comparableRecords(await collectRecords(back))).toEqual(records);
      await back.close();
      // Redis holds data now: a second restore into it is refused without force.
      const again = await runRestore({ config: toRedis, target: t }).catch((e: unknown) => e);
      expect((again as BackupError).exitCode).toBe(EXIT.NOT_EMPTY);
    } finally {
      const client = (redis as unknown as { client: import('ioredis').Redis }).client;
      const keys = await client.keys(`${prefix}*`);
      if (keys.length) await client.unlink(...keys);
      await redis.close();
    }
  });
});

describe('scheduled backups', () => {
  it('never overlaps runs, logs outcomes, and stop() aborts a running backup', async () => {
    const lines: Record<string, unknown>[] = [];
    const logger = pino(
      { level: 'info' },
      { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) },
    );
    const c = cfg({
      DATA_DIR: config.DATA_DIR,
      BACKUP_INTERVAL: '6h',
      BACKUP_TARGET: path.join(root, 'sched'),
      BACKUP_KEEP: '2',
    });
    expect(startBackupSchedule({ config: { ...c, BACKUP_INTERVAL: 0 }, store, files, logger })).toBeNull();
    const s = startBackupSchedule({ config: c, store, files, logger })!;
    const [a, b] = await Promise.all([s.runNow(), s.runNow()]);
    expect(a?.files).toBe(6);
    expect(b).toBeNull();
    expect(lines.map((l) => l.msg)).toEqual(
      expect.arrayContaining([
        'backups scheduled',
        'backup started',
        'backup finished',
        'backup: the previous run is still going; skipping this one',
      ]),
    );
    await s.runNow();
    await s.runNow();
    expect(await listSnapshots(new LocalFileStore(path.join(root, 'sched')))).toHaveLength(2);
    const running = s.runNow();
    await s.stop();
    expect(await running).toBeNull();
    expect(lines.some((l) => l.msg === 'backup stopped (server shutting down)')).toBe(true);
    expect(await listSnapshots(new LocalFileStore(path.join(root, 'sched')))).toHaveLength(2);
    expect(await s.runNow()).toBeNull();
  });
});

describe('scheduled backups with several processes', () => {
  const silent = pino({ level: 'silent' });
  const HOURS6 = 6 * 3_600_000;

  it("runs one backup per slot across processes; a killed runner's lease lapses and the next slot runs elsewhere", async () => {
    let now = HOURS6 * 1000 + 60_000;
    const hub = new MemoryClusterHub(() => now);
    const dir = path.join(root, 'sched-cluster');
    const c = cfg({
      DATA_DIR: config.DATA_DIR,
      BACKUP_INTERVAL: '6h',
      BACKUP_TARGET: dir,
      BACKUP_KEEP: '10',
    });
    const schedules = [0, 1, 2].map(() =>
      startBackupSchedule({
        config: c,
        store,
        files,
        logger: silent,
        cluster: hub.join(),
        clock: () => now,
      })!,
    );
    try {
      // All three tick in the same slot (their timers fire at different moments of it).
      const first = await Promise.all(schedules.map((s) => s.tick()));
      expect(first.filter((r) => r !== null)).toHaveLength(1);
      now += 3_600_000;
      expect((await Promise.all(schedules.map((s) => s.tick()))).every((r) => r === null)).toBe(true);
      expect(await listSnapshots(new LocalFileStore(dir))).toHaveLength(1);

      // A process took the next slot and its lease, then was killed mid-backup: nobody else backs
      // up while its lease holds, nor that slot after it lapsed (a slot is not run twice)...
      now = (Math.floor(now / HOURS6) + 1) * HOURS6 + 1_000;
      const killed = hub.join();
      expect(await killed.holdLease(BACKUP_LEASE, 30_000)).toBe(true);
      expect(await killed.once(`backup-slot:${Math.floor(now / HOURS6)}`, 2 * HOURS6)).toBe(true);
      now += 10_000;
      expect((await Promise.all(schedules.map((s) => s.tick()))).every((r) => r === null)).toBe(true);
      now += 30_000;
      expect((await Promise.all(schedules.map((s) => s.tick()))).every((r) => r === null)).toBe(true);
      // ...and the slot after is run by one of the others, once.
      now += HOURS6;
      const later = await Promise.all(schedules.map((s) => s.tick()));
      expect(later.filter((r) => r !== null)).toHaveLength(1);
      expect(await listSnapshots(new LocalFileStore(dir))).toHaveLength(2);
    } finally {
      await Promise.all(schedules.map((s) => s.stop()));
    }
  });
});

describe('target specs and configuration', () => {
  it('parses s3:// and folder targets', () => {
    expect(parseTargetSpec('s3://my-bucket/a/b/')).toEqual({
      kind: 's3',
      bucket: 'my-bucket',
      prefix: 'a/b/',
    });
    expect(parseTargetSpec('s3://my-bucket')).toEqual({ kind: 's3', bucket: 'my-bucket', prefix: '' });
    expect(parseTargetSpec('/mnt/bk')).toEqual({ kind: 'local', dir: '/mnt/bk' });
    expect(parseTargetSpec('file:///mnt/bk')).toEqual({ kind: 'local', dir: '/mnt/bk' });
    for (const bad of ['s3://', 's3://UPPER/x', 'gs://bucket/x']) {
      expect(() => parseTargetSpec(bad)).toThrow(BackupError);
    }
  });

  it('checks the backup and S3 variables together', () => {
    const problems = (env: Record<string, string>) => {
      try {
        cfg(env);
        return [];
      } catch (err) {
        return (err as ConfigError).problems;
      }
    };
    expect(cfg({ BACKUP_INTERVAL: '6h', BACKUP_TARGET: '/bk' }).BACKUP_INTERVAL).toBe(6 * 3_600_000);
    expect(cfg({ BACKUP_INTERVAL: '90s', BACKUP_TARGET: '/bk' }).BACKUP_INTERVAL).toBe(90_000);
    expect(cfg({}).BACKUP_INTERVAL).toBe(0);
    expect(cfg({ BACKUP_INTERVAL: 'off' }).BACKUP_INTERVAL).toBe(0);
    expect(cfg({}).S3_REGION).toBe('auto');
    expect(problems({ BACKUP_INTERVAL: '6h' })).toEqual([expect.stringMatching(/^BACKUP_TARGET/)]);
    expect(problems({ BACKUP_INTERVAL: '10s', BACKUP_TARGET: '/bk' })).toEqual([
      expect.stringMatching(/at least 1m/),
    ]);
    expect(problems({ BACKUP_INTERVAL: 'often', BACKUP_TARGET: '/bk' })).toEqual([
      expect.stringMatching(/duration/),
    ]);
    expect(problems({ FILES: 's3' })).toEqual([expect.stringMatching(/^S3_BUCKET/)]);
    expect(problems({ BACKUP_S3_ACCESS_KEY_ID: 'k' })).toEqual([
      expect.stringMatching(/^BACKUP_S3_SECRET_ACCESS_KEY/),
    ]);
    expect(problems({ BACKUP_TARGET: 's3://Bad_Bucket' })).toEqual([expect.stringMatching(/s3:\/\/bucket/)]);
    expect(
      problems({
        FILES: 's3',
        S3_BUCKET: 'bkt',
        S3_PREFIX: 'files/',
        BACKUP_TARGET: 's3://bkt/files/backups',
      }),
    ).toEqual([expect.stringMatching(/overlap/)]);
    expect(
      problems({ FILES: 's3', S3_BUCKET: 'bkt', S3_PREFIX: 'files/', BACKUP_TARGET: 's3://bkt/backups' }),
    ).toEqual([]);
  });
});

describe('progress', () => {
  it('prints a few plain lines off a terminal, and redraws one bar on it', () => {
    let t = 0;
    const plain: string[] = [];
    const p = createProgress({ label: 'backup', write: (s) => plain.push(s), tty: false, now: () => t });
    p.phase('files');
    p.addTotal(1000, 2);
    for (let i = 0; i < 100; i++) {
      t += 100;
      p.advance(10);
    }
    p.note('uploading big.bin (1.0 GB)');
    p.finish();
    expect(plain.length).toBeLessThan(15);
    expect(plain[0]).toBe('backup: files\n');
    expect(plain).toContain('backup: uploading big.bin (1.0 GB)\n');
    expect(plain.at(-2)).toMatch(/^backup: files 100% \(1000 B of 1000 B, 0\/2 files/);
    const tty: string[] = [];
    const q = createProgress({
      label: 'restore',
      write: (s) => tty.push(s),
      tty: true,
      columns: 120,
      now: () => t,
    });
    q.phase('files');
    q.addTotal(2048);
    t += 1000;
    q.advance(1024);
    q.finish();
    const drawn = tty.join('');
    expect(drawn).toContain('\r\x1b[2Krestore files [');
    expect(drawn).toMatch(/\[█+░+\] {2}50% 1\.0 KB of 2\.0 KB/);
    expect(tty.at(-1)).toBe('\n');
  });
});
