/**
 * `/api/v1/autoscale` (instructor-only, mounted in the /api/v1 plugin):
 * - `GET /autoscale` → {@link AutoscaleView} with `enabled: true`, or `{enabled: false}`.
 * - `POST /autoscale/hold` `{count, minutes}` → keep at least `count` GPUs for `minutes`
 *   (`count: 0` ends a hold). Audited.
 * - `POST /autoscale/stop-all` `{on}` → stop every GPU now (idle ones at once, busy ones once
 *   their job finished) and start none until `{on: false}`. Audited.
 * - `GET /autoscale/usage.csv` → GPU time and cost per worker, UTC day and participant as CSV
 *   (RFC 4180, spreadsheet-formula safe), for the bill after the workshop. `?day=YYYY-MM-DD`
 *   keeps one day.
 */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { AuditLog } from '../admin/audit-log.js';
import { AppError } from '../errors.js';
import { parse } from '../http/parse.js';
import type { Autoscaler } from './autoscaler.js';
import { costCsv } from './cost.js';

/** The bodies of hold and stop-all, here and in the dashboard's own routes (src/admin/routes.ts). */
export const autoscaleHoldBody = z.strictObject({
  count: z.number().int().min(0).max(100),
  minutes: z
    .number()
    .int()
    .min(0)
    .max(24 * 60),
});
export const autoscaleStopAllBody = z.strictObject({ on: z.boolean() });
const usageQuery = z.strictObject({
  day: z
    .string()
    .regex(/^\d{4}-\d{2}-\d{2}$/, 'expected YYYY-MM-DD')
    .optional(),
});

export function autoscaleRoutes(
  app: FastifyInstance,
  deps: { autoscaler: Autoscaler | null; audit: AuditLog },
): void {
  const need = (): Autoscaler => {
    if (!deps.autoscaler) throw new AppError('CONFLICT', 'Autoscaling is off (AUTOSCALE_PROVIDER=none).');
    return deps.autoscaler;
  };

  app.get('/autoscale', () =>
    deps.autoscaler ? { enabled: true, ...deps.autoscaler.view() } : { enabled: false },
  );

  app.get('/autoscale/usage.csv', async (request, reply) => {
    const a = need();
    const q = parse(usageQuery, request.query ?? {});
    const rows = a.costRows().filter((r) => q.day === undefined || r.day === q.day);
    const file = `gpu-usage${q.day ? `-${q.day}` : ''}.csv`;
    return reply
      .header('content-type', 'text/csv; charset=utf-8')
      .header('content-disposition', `attachment; filename="${file}"`)
      .header('cache-control', 'no-store')
      .send(costCsv(rows));
  });

  app.post('/autoscale/hold', async (request) => {
    const a = need();
    const body = parse(autoscaleHoldBody, request.body ?? {});
    a.setHold(body.count, body.minutes);
    await deps.audit.record({
      by: request.principal?.name ?? 'unknown',
      action: 'autoscale.hold',
      target: null,
      details: body,
      ok: true,
    });
    return { enabled: true, ...a.view() };
  });

  app.post('/autoscale/stop-all', async (request) => {
    const a = need();
    const body = parse(autoscaleStopAllBody, request.body ?? {});
    a.setStopAll(body.on);
    await deps.audit.record({
      by: request.principal?.name ?? 'unknown',
      action: 'autoscale.stop_all',
      target: null,
      details: body,
      ok: true,
    });
    return { enabled: true, ...a.view() };
  });
}
