/**
 * `comfy-multi backup [--to s3://bucket/prefix | --to DIR] [--keep N] [--rehash] [--list]`:
 * a snapshot of the state and every user's files, incremental by content; see docs/backup.md.
 * Exit codes: 0 done, 1 failed, 2 bad usage/config, 3 target unusable (credentials, bucket,
 * endpoint), 4 a damaged snapshot was found.
 */
import type { Command } from 'commander';
import { runBackup } from '../../backup/backup.js';
import { BackupError, EXIT } from '../../backup/errors.js';
import { listSnapshots, readManifest } from '../../backup/manifest.js';
import { formatBytes } from '../../backup/progress.js';
import { openTarget } from '../../backup/target.js';
import type { Config } from '../../config/schema.js';
import { openFileStore } from '../../files/index.js';
import { openStore } from '../../store/index.js';
import { VERSION } from '../../version.js';
import { cliConfig } from '../context.js';
import { cliProgress, parseKeep, runCommand } from './backup-common.js';

export function targetOf(given: string | undefined, config: Config, flag: '--to' | '--from'): string {
  const spec = given ?? config.BACKUP_TARGET;
  if (!spec) {
    throw new BackupError(
      `no backup target: pass ${flag} s3://bucket/prefix or ${flag} DIR, or set BACKUP_TARGET`,
      EXIT.USAGE,
    );
  }
  return spec;
}

/** `comfy-multi backup --list` / `restore --list`: the snapshots in a target. */
export async function printSnapshots(spec: string, config: Config): Promise<number> {
  const target = await openTarget(spec, config);
  try {
    await target.check('restore');
    const ids = await listSnapshots(target.files);
    if (ids.length === 0) {
      process.stdout.write(`no snapshots in ${target.description}\n`);
      return EXIT.OK;
    }
    process.stdout.write(`snapshots in ${target.description} (oldest first):\n`);
    for (const id of ids) {
      const m = await readManifest(target.files, id).catch(() => null);
      process.stdout.write(
        m
          ? `  ${id}  ${m.created}  ${m.source.store}  ${m.files.length} files  ${formatBytes(m.totals.bytes)}\n`
          : `  ${id}  (manifest unreadable)\n`,
      );
    }
    return EXIT.OK;
  } finally {
    target.close();
  }
}

export function registerBackup(program: Command): void {
  program
    .command('backup')
    .description("back up the state and every user's files (incremental) to a folder or an S3 bucket")
    .option('--to <target>', 's3://bucket/prefix or a folder; default BACKUP_TARGET')
    .option(
      '--keep <n>',
      'snapshots to keep, older ones are deleted (0 keeps all); default BACKUP_KEEP',
      parseKeep,
    )
    .option('--rehash', 'hash every file instead of trusting unchanged size and modification time')
    .option('--list', 'list the snapshots in the target and exit')
    .action((opts: { to?: string; keep?: number; rehash?: boolean; list?: boolean }) =>
      runCommand(async () => {
        const config = cliConfig();
        const spec = targetOf(opts.to, config, '--to');
        if (opts.list) return printSnapshots(spec, config);
        const target = await openTarget(spec, config);
        const store = await openStore(config);
        const files = await openFileStore(config);
        try {
          const r = await runBackup({
            store,
            files,
            target,
            dataDir: config.DATA_DIR,
            keep: opts.keep ?? config.BACKUP_KEEP,
            rehash: !!opts.rehash,
            progress: cliProgress('backup'),
            toolVersion: VERSION,
          });
          const lines = [
            `snapshot ${r.id} written to ${r.target}`,
            `  files: ${r.files} (${formatBytes(r.bytes)}); sent ${r.uploadedFiles} new object(s), ${formatBytes(r.uploadedBytes)}; hashed ${r.hashedFiles}`,
            `  state: ${r.state.kind}, ${formatBytes(r.state.size)} (${formatBytes(r.state.storedSize)} compressed${r.state.uploaded ? '' : ', unchanged'})`,
          ];
          if (r.extras) lines.push(`  DATA_DIR files: ${r.extras}`);
          if (r.retention) {
            lines.push(
              `  retention: deleted ${r.retention.deletedSnapshots.length} snapshot(s), ${r.retention.deletedObjects} object(s) (${formatBytes(r.retention.freedBytes)})`,
            );
          }
          lines.push(`  took ${(r.durationMs / 1000).toFixed(1)} s`);
          process.stdout.write(`${lines.join('\n')}\n`);
          return EXIT.OK;
        } finally {
          target.close();
          files.close?.();
          await store.close();
        }
      }),
    );
}
