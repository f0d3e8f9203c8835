/** The soak report for people: a few plain tables. */
import type { SoakReport } from './soak.js';

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

export function formatReport(r: SoakReport): string {
  const o = r.options;
  const p = r.figures.participants;
  const out: string[] = [];
  out.push(
    `Workshop-day soak: ${o.users} participants, ${o.workers} GPUs, store ${o.store}, seed ${o.seed}, ` +
      `${o.minutes} min of load + ${r.drainSeconds} s drain (${r.wallSeconds} s wall), lease ${o.leaseMs} ms, ${o.build} control plane`,
  );
  out.push('');
  out.push(
    table([
      [
        'jobs',
        'completed',
        'failed',
        'cancelled',
        'per min',
        'submits',
        'queue-limit 429',
        'cancels',
        'reloads',
        'uploads',
        'logins',
        'typos',
        'login 429',
        'ws drops',
      ],
      [
        String(r.figures.jobs),
        String(r.figures.byStatus.completed ?? 0),
        String(r.figures.byStatus.failed ?? 0),
        String(r.figures.byStatus.cancelled ?? 0),
        String(r.figures.throughputPerMinute),
        String(p.submits),
        String(p.rejectedQueueLimit),
        String(p.cancels),
        String(p.reloads),
        String(p.uploads),
        String(p.logins),
        String(p.typos),
        String(p.loginRefused),
        String(p.wsDrops),
      ],
    ]),
  );
  const reasons = Object.entries(r.figures.failureReasons);
  if (reasons.length) out.push(`failed jobs by reason: ${reasons.map(([k, v]) => `${k} ${v}`).join(', ')}`);
  out.push('');
  out.push(
    table([
      ['fault', 'gpu', 'at', 'down', 'back after', 'in flight'],
      ...r.faults.map((f) => [
        f.kind,
        f.gpu === null ? '-' : String(f.gpu),
        `${f.atSeconds} s`,
        `${(f.downMs / 1000).toFixed(1)} s`,
        f.recoveredAfterSeconds === null ? '-' : `${f.recoveredAfterSeconds} s`,
        `${f.inFlight.length}${f.note ? ` (${f.note})` : ''}`,
      ]),
    ]),
  );
  out.push('');
  out.push(
    table([
      ['invariant', 'result', 'detail'],
      ...r.invariants.map((i) => [i.name, i.ok ? 'ok' : `FAIL (${i.violations})`, i.detail]),
    ]),
  );
  for (const i of r.invariants) {
    if (i.examples.length === 0) continue;
    out.push('');
    out.push(`${i.name}:`);
    for (const e of i.examples) out.push(`  - ${e}`);
  }
  out.push('');
  out.push(`report: ${r.outDir}/report.json, logs: ${r.outDir}/soak.log, ${r.outDir}/processes.log`);
  out.push(r.ok ? 'ALL INVARIANTS HELD' : 'SOME INVARIANTS FAILED');
  return out.join('\n');
}
