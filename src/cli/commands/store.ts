/**
 * `comfy-multi store export [--out FILE]` and `comfy-multi store import FILE [--replace]`: the whole
 * state store as JSON lines (see src/store/state-records.ts), streamed, to move a workshop between
 * backends (SQLite ↔ Redis) or machines. Stop the server before importing.
 */
import { once } from 'node:events';
import { createReadStream, createWriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import type { Writable } from 'node:stream';
import type { Command } from 'commander';
import { EXIT } from '../../backup/errors.js';
import { AppError } from '../../errors.js';
import { encodeStateRecord, readStateRecords } from '../../store/state-records.js';
import type { StateRecord } from '../../store/types.js';
import { cliConfig, withStore } from '../context.js';
import { runCommand } from './backup-common.js';

async function writeAll(out: Writable, records: AsyncIterable<StateRecord>): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for await (const r of records) {
    counts[r.type] = (counts[r.type] ?? 0) + 1;
    if (!out.write(encodeStateRecord(r))) await once(out, 'drain');
  }
  return counts;
}

export function registerStore(program: Command): void {
  const store = program
    .command('store')
    .description('export or import the whole state store as JSON lines (e.g. to move from SQLite to Redis)');

  store
    .command('export')
    .description('write every record of the configured store (STORE=…) as JSON lines')
    .option('--out <file>', 'write to this file (mode 0600); default standard output')
    .action((opts: { out?: string }) =>
      runCommand(async () => {
        const config = cliConfig();
        return withStore(config, async (s) => {
          if (!opts.out) {
            await writeAll(process.stdout, s.exportState());
            return EXIT.OK;
          }
          // Written beside, renamed when complete: a failed export never looks like a good one.
          const tmp = `${opts.out}.partial`;
          const file = createWriteStream(tmp, { mode: 0o600 });
          try {
            const counts = await writeAll(file, s.exportState());
            file.end();
            await once(file, 'finish');
            await rename(tmp, opts.out);
            process.stderr.write(
              `exported ${counts.job ?? 0} jobs, ${counts.account ?? 0} accounts, ${counts.worker_token ?? 0} worker tokens, ${counts.blob ?? 0} blobs from ${s.backend} to ${opts.out}\n`,
            );
          } catch (err) {
            file.destroy();
            await rm(tmp, { force: true });
            throw err;
          }
          return EXIT.OK;
        });
      }),
    );

  store
    .command('import')
    .description('load a JSON-lines export into the configured store (which must be empty, unless --replace)')
    .argument('<file>', 'the export ("-" for standard input)')
    .option('--replace', 'replace everything the store holds')
    .action((file: string, opts: { replace?: boolean }) =>
      runCommand(async () => {
        const config = cliConfig();
        const input = file === '-' ? process.stdin : createReadStream(file);
        return withStore(config, async (s) => {
          try {
            const c = await s.importState(readStateRecords(input), { replace: !!opts.replace });
            process.stdout.write(
              `imported into ${s.backend}: ${c.jobs} jobs, ${c.accounts} accounts, ${c.workerTokens} worker tokens, ${c.blobs} blobs, ${c.users} users' serve state\n`,
            );
            return EXIT.OK;
          } catch (err) {
            if (err instanceof AppError && err.code === 'CONFLICT') {
              throw new AppError('CONFLICT', `${err.message} Use --replace to overwrite it.`);
            }
            throw err;
          }
        });
      }),
    );
}
