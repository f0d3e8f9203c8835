/**
 * A short workshop-day soak in the normal test suite, once per store: 20 participants, 3 GPUs,
 * half a minute of load (longer while the faults last) with every kind of fault once (kill -9 of
 * a worker agent, of a ComfyUI stand-in and of the control plane, a Redis restart, an outage
 * longer than the lease, a frozen worker), then every invariant of the report must hold. Nothing
 * here depends on timing: the checks compare final states, execution records and files (see
 * test/soak/checks.ts).
 *
 * The full-length run is `npm run soak -- --minutes 60` (README, "Workshop-day soak").
 */
import { rmSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { formatReport } from './report.js';
import { runSoak, type SoakReport } from './soak.js';

const MINUTES = Number(process.env.SOAK_MINUTES ?? 0.5);

function expectAllHeld(report: SoakReport): void {
  const text = formatReport(report);
  // Every kind of fault really happened and everything came back.
  const kinds = new Set(report.faults.map((f) => f.kind));
  const expected = [
    'worker-kill',
    'standin-kill',
    'control-plane-kill',
    'control-plane-outage',
    'worker-freeze',
  ];
  if (report.options.store === 'redis') expected.push('redis-restart');
  for (const k of expected) expect(kinds.has(k as never), `${k} happened\n${text}`).toBe(true);
  for (const f of report.faults) expect(f.note, `${f.kind} recovered\n${text}`).toBeUndefined();
  // The participants did work, and jobs completed through all of it.
  expect(report.figures.byStatus.completed ?? 0, text).toBeGreaterThan(10);
  for (const inv of report.invariants) expect(inv.ok, `${inv.name}\n${text}`).toBe(true);
  expect(report.ok).toBe(true);
}

describe('workshop-day soak (short)', () => {
  for (const store of ['sqlite', 'redis'] as const) {
    it(`${store}: every invariant holds through every kind of fault`, async () => {
      const report = await runSoak({
        users: 20,
        workers: 3,
        minutes: MINUTES,
        store,
        seed: store === 'sqlite' ? 11 : 12,
        // Above the agents' reconnect back-off cap (15 s): with a shorter lease a job finished
        // during the outage can be re-claimed before its worker is back (see the README).
        leaseMs: 16_000,
        heartbeatMs: 1000,
      });
      expectAllHeld(report);
      // Kept on failure (the path is in the message) for the logs; removed when all held.
      rmSync(report.outDir, { recursive: true, force: true });
    }, 300_000);
  }
});
