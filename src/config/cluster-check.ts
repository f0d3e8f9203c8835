import type { Config } from './schema.js';
import { parseTargetSpec } from '../backup/target.js';

/**
 * Settings that work for one process but not for several sharing one Redis, said once at start
 * (the server cannot know whether other processes will join; SQLite, which never can, is refused
 * by DATA_DIR/serve.lock instead). One sentence each, for the log.
 */
export function multiProcessNotes(config: Config): string[] {
  if (config.STORE !== 'redis') return [];
  const notes: string[] = [];
  if (config.FILES === 'local') {
    notes.push(
      'STORE=redis with FILES=local: user files live on this machine only; run several processes with FILES=s3.',
    );
  }
  if (config.BACKUP_INTERVAL > 0 && config.BACKUP_TARGET) {
    let local = false;
    try {
      local = parseTargetSpec(config.BACKUP_TARGET).kind === 'local';
    } catch {
      // A bad target is reported by the backup itself.
    }
    if (local) {
      notes.push(
        'BACKUP_TARGET is a local folder: with several processes each scheduled backup is written by whichever one runs it, so use an s3:// target or the same shared folder on every host.',
      );
    }
  }
  return notes;
}
