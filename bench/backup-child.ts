/**
 * One backup or restore in a process of its own, so its peak resident memory is its own: run by
 * bench/backup.ts as `tsx bench/backup-child.ts backup|restore <target>` with the deployment in the
 * environment (DATA_DIR, STORE, BACKUP_S3_*). Prints one JSON line: elapsed ms, bytes moved, the
 * resident memory before the run and the process's peak (getrusage maxRSS).
 */
import { runBackup } from '../src/backup/backup.js';
import { runRestore } from '../src/backup/restore.js';
import { openTarget } from '../src/backup/target.js';
import { loadConfig, readEnv } from '../src/config/load-config.js';
import { openFileStore } from '../src/files/index.js';
import { openStore } from '../src/store/index.js';

const [mode, spec] = process.argv.slice(2);
if ((mode !== 'backup' && mode !== 'restore') || !spec) {
  console.error('usage: backup-child.ts backup|restore <target>');
  process.exit(2);
}
const config = loadConfig(readEnv());
const target = await openTarget(spec, config);
const baselineRss = process.memoryUsage().rss;
const started = performance.now();
let bytes: number;
if (mode === 'backup') {
  const store = await openStore(config);
  const files = await openFileStore(config);
  const r = await runBackup({ store, files, target, dataDir: config.DATA_DIR, toolVersion: 'bench' });
  bytes = r.bytes;
  await store.close();
  process.stderr.write(`backup: ${r.files} files, sent ${r.uploadedFiles}\n`);
} else {
  const r = await runRestore({ config, target });
  bytes = r.bytes;
}
const ms = performance.now() - started;
target.close();
console.log(
  JSON.stringify({
    ms,
    bytes,
    baselineRssMb: baselineRss / 1024 / 1024,
    peakRssMb: process.resourceUsage().maxRSS / 1024,
  }),
);
process.exit(0);
