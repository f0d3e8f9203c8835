import type { AuditEntry } from '../../view-types.js';
import type { Ctx } from './ctx.js';
import { MODE_LABEL, clock, fullTime } from './format.js';
import { Empty, Section } from './section.js';

const str = (v: unknown, fallback = '?') =>
  typeof v === 'string' || typeof v === 'number' ? String(v) : fallback;

function limits(v: unknown): string {
  if (typeof v !== 'object' || v === null) return 'defaults';
  const l = v as { maxPendingPerUser?: number; maxRunningPerUser?: number };
  const parts: string[] = [];
  if (l.maxPendingPerUser !== undefined) parts.push(`${l.maxPendingPerUser} waiting`);
  if (l.maxRunningPerUser !== undefined) parts.push(`${l.maxRunningPerUser} running`);
  return parts.length > 0 ? parts.join(', ') : 'defaults';
}

/** One audit entry in words; calls made through `/api/v1` (scripts) say so. */
export function describe(e: AuditEntry): string {
  const what = describeAction(e);
  return e.details.via === 'api' ? `${what} (API)` : what;
}

function describeAction(e: AuditEntry): string {
  const d = e.details;
  const job = `job #${str(d.number)} of ${str(d.user)}`;
  switch (e.action) {
    case 'job.submit':
      return `queued ${job}${d.front === true ? ' at the front' : ''}`;
    case 'job.cancel':
      return `cancelled ${job}`;
    case 'job.front':
      return `moved ${job} to the front`;
    case 'job.priority':
      return `set the priority of ${job} from ${str(d.from)} to ${str(d.to)}`;
    case 'queue.mode':
      return `switched the queue from ${MODE_LABEL[str(d.from)] ?? str(d.from)} to ${MODE_LABEL[str(d.to)] ?? str(d.to)}`;
    case 'queue.pause':
      return 'paused the queue';
    case 'queue.resume':
      return 'resumed the queue';
    case 'queue.limits':
      return `set the limits per participant to ${limits(d.to)}`;
    case 'user.limits':
      return `set the limits of ${str(e.target)} to ${limits(d.to)}`;
    case 'user.priority':
      return d.to === null
        ? `gave ${str(e.target)} the normal priority again`
        : `raised ${str(e.target)} to priority ${str(d.to)} (all their jobs)`;
    case 'user.reset_password':
      return `reset the password of ${str(e.target)}`;
    case 'worker.drain':
      return `drained GPU worker ${str(d.name, str(e.target))}`;
    case 'worker.undrain':
      return `undrained GPU worker ${str(d.name, str(e.target))}`;
    case 'broadcast.set':
      return `showed everyone: “${str(d.message, '')}”`;
    case 'broadcast.clear':
      return 'cleared the broadcast message';
    case 'alerts.test':
      return `sent a test alert (${str(d.delivery)})`;
    case 'frontend.use':
      return `switched participants to the ComfyUI frontend ${str(d.label, str(e.target))}`;
    case 'template.add':
      return `added the workshop template “${str(d.title, '')}”`;
    case 'template.replace':
      return `replaced the workshop template ${str(e.target)}`;
    case 'template.reorder':
      return 'reordered the workshop templates';
    case 'template.remove':
      return `removed the workshop template ${str(d.title, str(e.target))}`;
    case 'template.default':
      return e.target === null
        ? 'cleared the default workflow'
        : `made ${str(e.target)} the default workflow`;
    case 'template.send':
      return `sent ${str(e.target)} to everyone (${str(d.written, '0')} written, ${str(d.kept, '0')} kept their own)`;
    default:
      return e.action;
  }
}

export function ActivitySection({ ctx }: { ctx: Ctx }) {
  const list = ctx.s.audit;
  return (
    <Section id="activity" title="Activity log" count={list.length || undefined}>
      {list.length === 0 ? (
        <Empty title="No actions yet">
          <p>Everything done from this page is recorded here: who, what and when.</p>
        </Empty>
      ) : (
        <ol class="audit" aria-label="Instructor actions, newest first">
          {list.map((e) => (
            <li key={e.id} class={e.ok ? 'audit-item' : 'audit-item failed'}>
              <time dateTime={new Date(e.at).toISOString()} title={fullTime(e.at)} class="muted">
                {clock(e.at)}
              </time>
              <span class="audit-who">{e.by}</span>
              <span class="audit-what">
                {describe(e)}
                {e.ok ? null : <span class="tag tag-bad">failed: {e.error ?? 'error'}</span>}
              </span>
            </li>
          ))}
        </ol>
      )}
    </Section>
  );
}
