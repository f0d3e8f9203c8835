/**
 * Backend migration: a populated SQLite store exported and imported into Redis, and that Redis
 * store exported and imported into a fresh SQLite store. Every record, index and counter survives
 * both hops, and all three stores then behave identically (claims, affinity, releases, new ids).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { openRedisStore, type RedisStore } from './redis/redis-store.js';
import { openSqliteStore, type SqliteStore } from './sqlite/sqlite-store.js';
import {
  EXPORT_TEST_DEFAULTS,
  collectRecords,
  comparableRecords,
  expectSameBehaviour,
  populateForExport,
  storeSnapshot,
} from './state-export.conformance.js';
import { readStateRecords, encodeStateRecord } from './state-records.js';
import { Readable } from 'node:stream';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const redisUrl = inject('redisUrl');
const cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function sqlite(): Promise<SqliteStore> {
  const dir = mkdtempSync(join(tmpdir(), 'cm-migrate-'));
  const store = await openSqliteStore({ path: join(dir, 'state.db'), defaults: EXPORT_TEST_DEFAULTS });
  cleanups.push(async () => {
    expect(store.checkConsistency()).toEqual([]);
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return store;
}

async function redis(): Promise<RedisStore> {
  const keyPrefix = `test:migrate:${process.pid}:${Date.now().toString(36)}:${Math.random().toString(36).slice(2)}:`;
  const store = await openRedisStore({
    url: redisUrl,
    keyPrefix,
    defaults: EXPORT_TEST_DEFAULTS,
    name: 'test-migrate',
  });
  cleanups.push(async () => {
    const keys = await store.client.keys(`${keyPrefix}*`);
    if (keys.length) await store.client.unlink(...keys);
    await store.close();
  });
  return store;
}

/** Through the file format too: encode as JSON lines, parse and validate them back. */
async function viaJsonLines(records: Awaited<ReturnType<typeof collectRecords>>) {
  const text = records.map(encodeStateRecord).join('');
  const out = [];
  for await (const r of readStateRecords(Readable.from([text]))) out.push(r);
  return out;
}

describe('state migration between backends', () => {
  it('SQLite → Redis → SQLite keeps every record and the same behaviour', { timeout: 60_000 }, async () => {
    const source = await sqlite();
    await populateForExport(source);
    const original = await collectRecords(source);
    const before = await storeSnapshot(source);

    const middle = await redis();
    await middle.importState(await viaJsonLines(original));
    expect(await storeSnapshot(middle)).toEqual(before);
    const fromRedis = await collectRecords(middle);
    expect(comparableRecords(fromRedis)).toEqual(comparableRecords(original));

    const back = await sqlite();
    await back.importState(await viaJsonLines(fromRedis));
    expect(await storeSnapshot(back)).toEqual(before);
    expect(comparableRecords(await collectRecords(back))).toEqual(comparableRecords(original));

    await expectSameBehaviour(source, middle, back);
  });

  it('Redis → SQLite from a store that was used on Redis first', { timeout: 60_000 }, async () => {
    const source = await redis();
    await populateForExport(source);
    const target = await sqlite();
    await target.importState(source.exportState());
    expect(await storeSnapshot(target)).toEqual(await storeSnapshot(source));
    await expectSameBehaviour(source, target);
  });

  it(
    'comfy-multi store export | import moves a SQLite workshop into Redis',
    { timeout: 60_000 },
    async () => {
      const dir = mkdtempSync(join(tmpdir(), 'cm-migrate-cli-'));
      cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
      const source = await openSqliteStore({
        path: join(dir, 'comfy-multi.db'),
        defaults: EXPORT_TEST_DEFAULTS,
      });
      await populateForExport(source);
      const before = await storeSnapshot(source);
      await source.close();
      const target = await redis();
      const cli = (args: string[], env: Record<string, string>) =>
        new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
          execFile(
            process.execPath,
            ['--import', 'tsx', 'src/cli/index.ts', 'store', ...args],
            {
              cwd: fileURLToPath(new URL('../../', import.meta.url)),
              env: { PATH: process.env.PATH ?? '', LOG_LEVEL: 'silent', DATA_DIR: dir, ...env },
            },
            (err, stdout, stderr) => resolve({ code: err ? Number(err.code) : 0, stdout, stderr }),
          );
        });
      const exported = await cli(['export', '--out', join(dir, 'state.jsonl')], { STORE: 'sqlite' });
      expect(exported.code, exported.stderr).toBe(0);
      expect(exported.stderr).toMatch(
        /^exported \d+ jobs, 2 accounts, 2 worker tokens, 5 blobs from sqlite to /,
      );
      const imported = await cli(['import', join(dir, 'state.jsonl')], {
        STORE: 'redis',
        REDIS_URL: redisUrl,
        REDIS_PREFIX: target.keys.prefix,
      });
      expect(imported.code, imported.stderr).toBe(0);
      expect(imported.stdout).toMatch(/^imported into redis: \d+ jobs, 2 accounts/);
      expect(await storeSnapshot(target)).toEqual(before);
    },
  );
});
