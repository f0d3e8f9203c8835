/** The shared frontend copy stays bounded: old manifests and the contents only they named go. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MemoryClusterHub } from '../cluster/cluster-bus.js';
import { LocalFileStore } from '../files/local-file-store.js';
import { openSqliteStore, type SqliteStore } from '../store/sqlite/sqlite-store.js';
import { FrontendCache, versionIdOf, type FrontendVersion } from './frontend-cache.js';
import { FrontendShare } from './frontend-share.js';

const sha = (s: string) => createHash('sha256').update(s).digest('hex');
const logger = pino({ level: 'silent' });

describe('FrontendShare.prune', () => {
  let dir: string;
  let store: SqliteStore;
  let files: LocalFileStore;
  let cache: FrontendCache;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cm-fshare-'));
    store = await openSqliteStore({
      path: join(dir, 'db.sqlite'),
      defaults: {
        mode: 'fifo',
        paused: false,
        limits: { maxPendingPerUser: 1, maxRunningPerUser: 1 },
        userLimits: {},
      },
    });
    files = new LocalFileStore(join(dir, 'files'));
    cache = await FrontendCache.open({ root: join(dir, 'cache'), keepVersions: 2, logger });
  });
  afterEach(async () => {
    await cache.close();
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** A shared version: one content shared by all, one of its own. */
  async function shareVersion(n: number): Promise<FrontendVersion> {
    const own = `console.log(${n})`;
    const common = 'export const common = 1';
    const list = [
      { path: 'assets/common.js', size: common.length, sha256: sha(common) },
      { path: 'index.html', size: own.length, sha256: sha(own) },
    ];
    for (const body of [own, common]) await files.write(`.frontend/blobs/${sha(body)}`, Buffer.from(body));
    const v: FrontendVersion = {
      id: versionIdOf(list),
      label: `frontend 1.${n}`,
      source: 'http',
      comfyuiVersion: '0.3.64',
      frontendVersion: `1.${n}`,
      files: list,
      bytes: own.length + common.length,
      workerId: 'gpu1',
      createdAt: 1000 * n,
      offeredAt: 1000 * n,
    };
    await store.putBlob('frontend', `versions/${v.id}`, JSON.stringify(v));
    return v;
  }

  it('keeps twice FRONTEND_KEEP_VERSIONS manifests and the contents they name; young contents stay', async () => {
    let now = Date.now();
    const share = new FrontendShare({
      cache,
      files,
      store,
      cluster: new MemoryClusterHub().join(),
      logger,
      keepVersions: 2,
      clock: () => now,
    });
    const versions = [];
    for (let n = 1; n <= 6; n++) versions.push(await shareVersion(n));
    // Version 1 is the one the instructor chose: kept although the oldest.
    await store.putBlob('frontend', 'current', JSON.stringify({ versionId: versions[0]!.id }));

    // Everything is younger than an hour: manifests go, contents not yet.
    expect(await share.prune()).toEqual({ versions: 2, contents: 0 });
    const kept = (await store.listBlobs('frontend', 'versions/')).map((k) => k.slice('versions/'.length));
    expect(kept.sort()).toEqual(
      [versions[0], versions[3], versions[4], versions[5]].map((v) => v!.id).sort(),
    );

    now += 2 * 3_600_000;
    expect(await share.prune()).toEqual({ versions: 0, contents: 2 });
    const left = (await files.list('.frontend/blobs/')).map((f) => f.key.slice('.frontend/blobs/'.length));
    expect(left.sort()).toEqual(
      [sha('export const common = 1'), ...[1, 4, 5, 6].map((n) => sha(`console.log(${n})`))].sort(),
    );
  });
});
