/**
 * `comfy-multi restore [--from s3://bucket/prefix | --from DIR] [--snapshot ID] [--dry-run] [--force]`:
 * puts a snapshot back onto this machine (stop the server first); see docs/backup.md.
 * Exit codes: 0 done, 1 failed, 2 bad usage/config, 3 target unusable, 4 no such snapshot or a
 * checksum/object problem, 5 refused because the data folder (or store, or bucket) is not empty.
 */
import type { Command } from 'commander';
import { EXIT } from '../../backup/errors.js';
import { runRestore } from '../../backup/restore.js';
import { openTarget } from '../../backup/target.js';
import { cliConfig } from '../context.js';
import { printSnapshots, targetOf } from './backup.js';
import { cliProgress, runCommand } from './backup-common.js';

export function registerRestore(program: Command): void {
  program
    .command('restore')
    .description('restore a backup snapshot (state and files, checksums verified) onto this machine')
    .option('--from <target>', 's3://bucket/prefix or a folder; default BACKUP_TARGET')
    .option('--snapshot <id>', 'which snapshot; default the newest')
    .option('--dry-run', 'check the snapshot and show what would be restored, changing nothing')
    .option('--force', 'restore even though DATA_DIR (or the Redis store, or the files bucket) is not empty')
    .option('--list', 'list the snapshots in the target and exit')
    .action((opts: { from?: string; snapshot?: string; dryRun?: boolean; force?: boolean; list?: boolean }) =>
      runCommand(async () => {
        const config = cliConfig();
        const spec = targetOf(opts.from, config, '--from');
        if (opts.list) return printSnapshots(spec, config);
        const target = await openTarget(spec, config);
        try {
          await runRestore({
            config,
            target,
            snapshot: opts.snapshot,
            dryRun: !!opts.dryRun,
            force: !!opts.force,
            progress: cliProgress('restore'),
            print: (line) => process.stdout.write(`${line}\n`),
          });
          return EXIT.OK;
        } finally {
          target.close();
        }
      }),
    );
}
