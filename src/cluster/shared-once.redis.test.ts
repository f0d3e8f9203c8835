/**
 * Work that must happen once, on three processes sharing a real Redis (their own RedisClusterBus
 * each, as `comfy-multi serve` builds them): a scheduled backup slot runs on one process only.
 * (Leases and send-once keys themselves: redis-cluster-bus.redis.test.ts.)
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { startBackupSchedule } from '../backup/schedule.js';
import { listSnapshots } from '../backup/manifest.js';
import { LocalFileStore } from '../files/local-file-store.js';
import { startClusterKit, type ClusterKit } from '../../test/support/cluster-kit.js';

const redisUrl = inject('redisUrl');

describe('once across processes (real Redis)', () => {
  let kit: ClusterKit;
  let target: string;

  beforeAll(async () => {
    target = await mkdtemp(join(tmpdir(), 'cm-cluster-backup-'));
    kit = await startClusterKit({
      redisUrl,
      count: 3,
      env: { BACKUP_INTERVAL: '6h', BACKUP_TARGET: target, BACKUP_KEEP: '10' },
    });
  });
  afterAll(async () => {
    await kit?.close();
    await rm(target, { recursive: true, force: true });
  });

  it('three processes ticking in the same backup slot write one snapshot', async () => {
    expect(kit.processes.every((p) => p.services.cluster.shared)).toBe(true);
    const logger = pino({ level: 'silent' });
    const schedules = kit.processes.map((p) => startBackupSchedule({ ...p.services, logger })!);
    try {
      const results = await Promise.all(schedules.map((s) => s.tick()));
      expect(results.filter((r) => r !== null)).toHaveLength(1);
      expect(await Promise.all(schedules.map((s) => s.tick()))).toEqual([null, null, null]);
      expect(await listSnapshots(new LocalFileStore(target))).toHaveLength(1);
    } finally {
      await Promise.all(schedules.map((s) => s.stop()));
    }
  });
});
