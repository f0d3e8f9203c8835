/**
 * Backups from inside the server (`BACKUP_INTERVAL`, `BACKUP_TARGET`, `BACKUP_KEEP`): a timer that
 * never keeps the process alive (unref), never starts a run while the previous one is still going
 * (the tick is skipped and logged), logs each run's outcome, and on stop aborts a running backup
 * (its manifest is then never written, so it leaves no snapshot) and waits for it to wind down.
 *
 * With several control-plane processes (a shared `ClusterBus`), every process has the timer but a
 * backup runs on one at a time: the runner holds the `backup` lease and renews it while the backup
 * runs (losing it aborts the run, so two never write the same target). Time is cut into slots of
 * BACKUP_INTERVAL; the first process to tick in a slot claims it (`once`), so a slot is backed up
 * at most once. A killed runner stops renewing, its lease lapses, and whichever process ticks in
 * the next slot runs it.
 */
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import type { FileStore } from '../files/file-store.js';
import type { JobStore } from '../store/types.js';
import type { ClusterBus } from '../cluster/index.js';
import { VERSION } from '../version.js';
import { runBackup, type BackupResult } from './backup.js';
import { openTarget } from './target.js';

export interface BackupSchedule {
  /** Runs one backup now (unless one is running, here or on another process: then resolves with null). */
  runNow(): Promise<BackupResult | null>;
  /** What the timer does: runs this slot's backup unless another process already took the slot. */
  tick(): Promise<BackupResult | null>;
  stop(): Promise<void>;
}

export interface ScheduleDeps {
  config: Config;
  store: JobStore;
  files: FileStore;
  logger: Logger;
  /** Several processes: one backup at a time, one per slot (absent: this process is alone). */
  cluster?: Pick<ClusterBus, 'shared' | 'once' | 'holdLease' | 'releaseLease'>;
  /** Tests move time; default Date.now. */
  clock?: () => number;
}

/** The lease a running backup holds; renewed every third of it. */
export const BACKUP_LEASE = 'backup';
const LEASE_MS = 30_000;

/** Starts the schedule, or returns null when BACKUP_INTERVAL is off (0). */
export function startBackupSchedule(deps: ScheduleDeps): BackupSchedule | null {
  const { config, logger } = deps;
  const interval = config.BACKUP_INTERVAL;
  if (interval <= 0 || !config.BACKUP_TARGET) return null;
  const spec = config.BACKUP_TARGET;
  let running: Promise<BackupResult | null> | null = null;
  let abort: AbortController | null = null;
  let stopped = false;
  const cluster = deps.cluster?.shared ? deps.cluster : null;
  const clock = deps.clock ?? Date.now;

  const runNow = (slot?: number): Promise<BackupResult | null> => {
    if (stopped) return Promise.resolve(null);
    if (running) {
      logger.warn({ target: spec }, 'backup: the previous run is still going; skipping this one');
      return Promise.resolve(null);
    }
    abort = new AbortController();
    const signal = abort.signal;
    const ctl = abort;
    running = (async () => {
      let target: Awaited<ReturnType<typeof openTarget>> | undefined;
      let renew: NodeJS.Timeout | undefined;
      let leased = false;
      let lostLease = false;
      try {
        if (cluster) {
          if (!(await cluster.holdLease(BACKUP_LEASE, LEASE_MS))) {
            logger.info({ target: spec }, 'backup: another process is running one; skipping');
            return null;
          }
          leased = true;
          if (slot !== undefined && !(await cluster.once(`backup-slot:${slot}`, interval * 2))) {
            logger.debug({ slot }, 'backup: this slot was already taken by another process');
            return null;
          }
          renew = setInterval(() => {
            cluster.holdLease(BACKUP_LEASE, LEASE_MS).then(
              (held) => {
                if (held) return;
                logger.error({ target: spec }, 'backup: lost the backup lease; stopping this run');
                lostLease = true;
                ctl.abort();
              },
              (err: unknown) => logger.warn({ err }, 'backup: could not renew the backup lease'),
            );
          }, LEASE_MS / 3);
          renew.unref();
        }
        target = await openTarget(spec, config);
        logger.info({ target: target.description }, 'backup started');
        const r = await runBackup({
          store: deps.store,
          files: deps.files,
          target,
          dataDir: config.DATA_DIR,
          keep: config.BACKUP_KEEP,
          signal,
          toolVersion: VERSION,
        });
        logger.info(
          {
            snapshot: r.id,
            target: r.target,
            files: r.files,
            bytes: r.bytes,
            uploadedFiles: r.uploadedFiles,
            uploadedBytes: r.uploadedBytes,
            deletedSnapshots: r.retention?.deletedSnapshots.length ?? 0,
            ms: r.durationMs,
          },
          'backup finished',
        );
        return r;
      } catch (err) {
        if (lostLease) logger.warn({ target: spec }, 'backup stopped (lease lost)');
        else if (signal.aborted) logger.warn({ target: spec }, 'backup stopped (server shutting down)');
        else
          logger.error(
            { err, target: spec, exitCode: (err as { exitCode?: number }).exitCode },
            'backup failed',
          );
        return null;
      } finally {
        clearInterval(renew);
        target?.close();
        if (leased) await cluster?.releaseLease(BACKUP_LEASE).catch(() => undefined);
      }
    })().finally(() => {
      running = null;
      abort = null;
    });
    return running;
  };

  // One slot per BACKUP_INTERVAL of wall-clock time, the same on every process.
  const tick = () => runNow(cluster ? Math.floor(clock() / interval) : undefined);
  const timer = setInterval(() => void tick(), interval);
  timer.unref();
  logger.info({ target: spec, everyMs: interval, keep: config.BACKUP_KEEP }, 'backups scheduled');

  return {
    runNow: () => runNow(),
    tick,
    async stop() {
      stopped = true;
      clearInterval(timer);
      abort?.abort();
      await running;
    },
  };
}
