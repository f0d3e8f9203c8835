/**
 * `npm run bench`: every benchmark, printed as JSON and as a short table. Figures, not pass/fail:
 * targets are listed beside each figure so a regression is visible at a glance.
 */
import { benchStore } from './store.js';

type Figures = Record<string, number>;

const TARGETS: Record<string, string> = {
  'sqlite.enqueue_per_s': '≥ 2000',
  'redis.enqueue_per_s': '≥ 1000',
  'sqlite.claim_p99_ms_100k': '≤ 5',
  'redis.claim_p99_ms_100k': '≤ 5',
  'dispatch.dispatch_p99_ms': '≤ 20',
  'dispatch.idle_gap_median_ms': '≤ 10',
  'gateway.rss_mb_20': '≤ 150',
  'gateway.prompt_p99_ms_20': '≤ 20',
  'gateway.prompt_p99_ms': '≤ 20',
  'startup.restart_max_ms': '≤ 2000',
  'login.spray_health_p99_ms': '≤ 50',
  'login.spray_queue_p99_ms': '≤ 50',
  'login.one_account_checks': '≤ 5',
  'login.spray_checks': '≤ 100',
  'json.check_to_parse_ratio': '≤ 1',
  'convert.ltx2_median_ms': '≤ 10',
  'convert.chain2000_median_ms': '≤ 100',
  'firstload.comfy_multi.first_load_ratio_pct': '≤ 25',
  'roundtrip.ws_overhead_median_ms': '≤ 5',
  'roundtrip.ws_overhead_p90_ms': '≤ 10',
  'roundtrip.poll_overhead_median_ms': '≤ 5',
  'roundtrip.poll_overhead_p90_ms': '≤ 10',
  'autoscale.auto_defaults.gpu_hours_saved_pct': '≥ 40',
  'autoscale.auto_defaults.p95_minus_always_on_s': '≤ 120',
  'cluster.rss_mb_max': '≤ 250',
  'cluster.prompt_p99_ms': '≤ 50',
  'cluster.event_p99_ms': '≤ 100',
  'cluster.events_delivered_pct': '= 100',
};

async function optional(name: string, load: () => Promise<Figures>): Promise<Figures | { error: string }> {
  try {
    return await load();
  } catch (err) {
    return { error: `${name}: ${(err as Error).message}` };
  }
}

const only = process.argv.slice(2);
const wanted = (name: string) => only.length === 0 || only.includes(name);
const results: Record<string, Figures | { error: string }> = {};

if (wanted('sqlite')) results.sqlite = await optional('sqlite', () => benchStore('sqlite'));
if (wanted('redis')) results.redis = await optional('redis', () => benchStore('redis'));
if (wanted('dispatch')) {
  results.dispatch = await optional('dispatch', async () => (await import('./dispatch.js')).benchDispatch());
}
if (wanted('roundtrip')) {
  results.roundtrip = await optional('roundtrip', async () =>
    (await import('./roundtrip.js')).benchRoundtrip(),
  );
}

if (wanted('gateway')) {
  results.gateway = await optional('gateway', async () => (await import('./gateway.js')).benchGateway());
}

if (wanted('startup')) {
  results.startup = await optional('startup', async () => (await import('./startup.js')).benchStartup());
}
if (wanted('login')) {
  results.login = await optional('login', async () => (await import('./login.js')).benchLogin());
}
if (wanted('json')) {
  results.json = await optional('json', async () => (await import('./json-depth.js')).benchJsonDepth());
}

if (wanted('firstload')) {
  results.firstload = await optional('firstload', async () =>
    (await import('./firstload.js')).benchFirstLoad(),
  );
}

if (wanted('ranges')) {
  results.ranges = await optional('ranges', async () => (await import('./ranges.js')).benchRanges());
}

if (wanted('video')) {
  results.video = await optional('video', async () => (await import('./video.js')).benchVideo());
}

if (wanted('convert')) {
  results.convert = await optional('convert', async () => (await import('./convert.js')).benchConvert());
}

if (wanted('autoscale')) {
  results.autoscale = await optional('autoscale', async () =>
    (await import('./autoscale.js')).benchAutoscale(),
  );
}

if (wanted('bigoutput')) {
  results.bigoutput = await optional('bigoutput', async () =>
    (await import('./bigoutput.js')).benchBigOutput(),
  );
}

if (wanted('cluster')) {
  results.cluster = await optional('cluster', async () => (await import('./cluster.js')).benchCluster());
}

if (wanted('backup')) {
  results.backup = await optional('backup', async () => (await import('./backup.js')).benchBackup());
}

console.log(JSON.stringify(results, null, 2));
console.log('\n| benchmark | figure | value | target |\n| --- | --- | --- | --- |');
for (const [group, figures] of Object.entries(results)) {
  for (const [key, value] of Object.entries(figures)) {
    console.log(`| ${group} | ${key} | ${value} | ${TARGETS[`${group}.${key}`] ?? ''} |`);
  }
}
