/**
 * Backups from inside the server (`BACKUP_INTERVAL`, `BACKUP_TARGET`, `BACKUP_KEEP`): a timer that
 * never keeps the process alive (unref), never starts a run while the previous one is still going
 * (the tick is skipped and logged), logs each run's outcome, and on stop aborts a running backup
 * (its manifest is then never written, so it leaves no snapshot) and waits for it to wind down.
 */
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import type { FileStore } from '../files/file-store.js';
import type { JobStore } from '../store/types.js';
import { VERSION } from '../version.js';
import { runBackup, type BackupResult } from './backup.js';
import { openTarget } from './target.js';

export interface BackupSchedule {
  /** Runs one backup now (unless one is running: then resolves with null). */
  runNow(): Promise<BackupResult | null>;
  stop(): Promise<void>;
}

export interface ScheduleDeps {
  config: Config;
  store: JobStore;
  files: FileStore;
  logger: Logger;
}

/** Starts the schedule, or returns null when BACKUP_INTERVAL is off (0). */
export function startBackupSchedule(deps: ScheduleDeps): BackupSchedule | null {
  const { config, logger } = deps;
  const interval = config.BACKUP_INTERVAL;
  if (interval <= 0 || !config.BACKUP_TARGET) return null;
  const spec = config.BACKUP_TARGET;
  let running: Promise<BackupResult | null> | null = null;
  let abort: AbortController | null = null;
  let stopped = false;

  const runNow = (): Promise<BackupResult | null> => {
    if (stopped) return Promise.resolve(null);
    if (running) {
      logger.warn({ target: spec }, 'backup: the previous run is still going; skipping this one');
      return Promise.resolve(null);
    }
    abort = new AbortController();
    const signal = abort.signal;
    running = (async () => {
      let target: Awaited<ReturnType<typeof openTarget>> | undefined;
      try {
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
        if (signal.aborted) logger.warn({ target: spec }, 'backup stopped (server shutting down)');
        else
          logger.error(
            { err, target: spec, exitCode: (err as { exitCode?: number }).exitCode },
            'backup failed',
          );
        return null;
      } finally {
        target?.close();
      }
    })().finally(() => {
      running = null;
      abort = null;
    });
    return running;
  };

  const timer = setInterval(() => void runNow(), interval);
  timer.unref();
  logger.info({ target: spec, everyMs: interval, keep: config.BACKUP_KEEP }, 'backups scheduled');

  return {
    runNow,
    async stop() {
      stopped = true;
      clearInterval(timer);
      abort?.abort();
      await running;
    },
  };
}
