import { action } from './api.js';
import type { Ctx } from './ctx.js';
import { clock, duration } from './format.js';
import { Empty, Section } from './section.js';

const PHASE_LABEL = {
  requested: 'asked for',
  starting: 'starting',
  ready: 'ready',
  stopping: 'stopping',
} as const;

/** GPUs on demand: what the autoscaler runs, why (its decisions), what it costs, and overrides. */
export function AutoscaleSection({ ctx }: { ctx: Ctx }) {
  const a = ctx.s.autoscale;
  if (!a) return null;
  const hours = (a.usage.todaySeconds / 3600).toFixed(2);
  const cost =
    a.usage.pricePerHour > 0 ? ` · ${a.usage.todayCost.toFixed(2)} at ${a.usage.pricePerHour}/h` : '';
  const budget = a.usage.budgetSeconds > 0 ? ` of ${(a.usage.budgetSeconds / 3600).toFixed(1)} GPU h` : '';
  const hold = () =>
    ctx.confirm({
      title: `Keep ${a.maxWorkers} GPU(s) warm for the next hour?`,
      body: <p>They start now (if not running) and are not stopped for idleness until the hour is over.</p>,
      confirmLabel: 'Keep warm',
      run: async () => {
        await action('/autoscale/hold', { count: a.maxWorkers, minutes: 60 });
        return `${a.maxWorkers} GPU(s) kept warm for an hour.`;
      },
    });
  const stopAll = () =>
    ctx.confirm(
      a.stopAll
        ? {
            title: 'Resume autoscaling?',
            body: <p>GPUs start again when jobs wait.</p>,
            confirmLabel: 'Resume',
            run: async () => {
              await action('/autoscale/stop-all', { on: false });
              return 'Autoscaling resumed.';
            },
          }
        : {
            title: 'Stop every GPU now?',
            body: (
              <p>
                Idle GPUs stop at once; busy ones finish their job first. Nothing starts until you resume;
                waiting jobs stay in the queue.
              </p>
            ),
            confirmLabel: 'Stop all GPUs',
            danger: true,
            run: async () => {
              await action('/autoscale/stop-all', { on: true });
              return 'Stopping every GPU.';
            },
          },
    );
  return (
    <Section
      id="autoscale"
      title="GPUs on demand"
      count={a.instances.length}
      actions={
        <>
          <button type="button" class="btn btn-small" onClick={hold}>
            Keep warm 1 h
          </button>
          <button type="button" class={`btn btn-small ${a.stopAll ? '' : 'btn-danger'}`} onClick={stopAll}>
            {a.stopAll ? 'Resume' : 'Stop all'}
          </button>
        </>
      }
    >
      <p class="muted">
        {a.provider} ({a.instanceType}){a.dryRun ? ' · dry run' : ''} · {a.minWorkers}–{a.maxWorkers} workers
        · today {hours} GPU h{budget}
        {cost} · typical start{' '}
        {a.startEstimateSeconds === null
          ? 'not measured yet'
          : `${a.startEstimateSeconds} s (${a.startsMeasured} measured)`}
        {a.hold ? ` · holding ${a.hold.count} until ${clock(a.hold.until)}` : ''}
        {a.stopAll ? ' · STOP ALL is on' : ''}
      </p>
      {a.instances.length === 0 ? (
        <Empty title="No GPU running">A GPU starts when a job waits.</Empty>
      ) : (
        <ul class="autoscale-list">
          {a.instances.map((i) => (
            <li key={i.name}>
              <b>{i.name}</b> {PHASE_LABEL[i.phase]}
              {i.etaSeconds !== null ? `, about ${i.etaSeconds} s` : ''}
              {i.held > 0 ? ` · ${i.held} job(s)` : ''} · up {duration((ctx.now - i.requestedAt) / 1000)}
            </li>
          ))}
        </ul>
      )}
      <p class="muted autoscale-cost">
        {a.usage.participants.length > 0
          ? `GPU cost per participant: ${a.usage.participants
              .slice(0, 8)
              .map((p) => `${p.participant} ${p.cost.toFixed(2)} (${duration(p.gpuSeconds)})`)
              .join(' · ')}${a.usage.participants.length > 8 ? ' · …' : ''} · `
          : ''}
        <a href="/api/v1/autoscale/usage.csv" download>
          Download GPU usage (CSV)
        </a>
      </p>
      <ul class="autoscale-list decisions" aria-label="Autoscaler decisions">
        {a.decisions.slice(0, 12).map((d, n) => (
          <li key={`${d.at}-${n}`}>
            {clock(d.at)} <b>{d.action}</b> {d.instance ? `${d.instance}: ` : ''}
            {d.reason}
          </li>
        ))}
      </ul>
    </Section>
  );
}
