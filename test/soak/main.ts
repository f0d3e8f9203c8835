/**
 * `npm run soak -- --users 20 --workers 3 --minutes 10 [--store sqlite|redis] [--seed S]
 * [--lease-ms 8000] [--out <folder>] [--keep-data]`: a workshop day against real processes on
 * loopback. Prints the report, writes `<out>/report.json`, and exits 1 when an invariant failed
 * (2 when the soak itself could not run).
 */
import { parseArgs } from 'node:util';
import { formatReport } from './report.js';
import { runSoak } from './soak.js';

function num(v: string | undefined, name: string, def: number): number {
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name} must be a positive number, got ${v}`);
  return n;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      users: { type: 'string' },
      workers: { type: 'string' },
      minutes: { type: 'string' },
      store: { type: 'string' },
      seed: { type: 'string' },
      'lease-ms': { type: 'string' },
      'outage-seconds': { type: 'string' },
      'rss-growth-mb': { type: 'string' },
      out: { type: 'string' },
      'keep-data': { type: 'boolean' },
      quiet: { type: 'boolean' },
    },
  });
  const store = values.store ?? 'sqlite';
  if (store !== 'sqlite' && store !== 'redis') throw new Error('--store must be sqlite or redis');
  const report = await runSoak({
    users: Math.round(num(values.users, 'users', 20)),
    workers: Math.round(num(values.workers, 'workers', 3)),
    minutes: num(values.minutes, 'minutes', 10),
    store,
    seed: Math.round(num(values.seed, 'seed', 1)),
    ...(values['lease-ms'] ? { leaseMs: num(values['lease-ms'], 'lease-ms', 8000) } : {}),
    ...(values['outage-seconds']
      ? { outageMs: num(values['outage-seconds'], 'outage-seconds', 45) * 1000 }
      : {}),
    ...(values['rss-growth-mb']
      ? { rssGrowthBoundMb: num(values['rss-growth-mb'], 'rss-growth-mb', 64) }
      : {}),
    ...(values.out ? { outDir: values.out } : {}),
    keepData: values['keep-data'] === true,
    ...(values.quiet ? {} : { log: (line: string) => console.log(line) }),
  });
  console.log(`\n${formatReport(report)}`);
  return report.ok ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err);
    process.exit(2);
  },
);
