import type { PendingRow } from '../../view-types.js';
import { action } from './api.js';
import type { Ctx } from './ctx.js';
import { fullTime, modelName, shortDuration } from './format.js';
import { Empty, Section } from './section.js';

const PRIORITY_TEXT: Record<string, string> = {
  instructor: 'instructor',
  high: 'high',
  normal: 'normal',
  low: 'low',
};

function Row({ ctx, j }: { ctx: Ctx; j: PendingRow }) {
  const label = `job #${j.number} of ${j.user}`;
  const front = () =>
    ctx.confirm({
      title: `Move ${label} to the front?`,
      body: (
        <p>
          It runs next, ahead of every job not moved to the front
          {j.position > 1 ? ` (it is #${j.position} now)` : ''}. Jobs already running are not interrupted.
        </p>
      ),
      confirmLabel: 'Move to front',
      run: async () => {
        await action(`/jobs/${encodeURIComponent(j.id)}/front`);
        return `Moved ${label} to the front.`;
      },
    });
  const cancel = () =>
    ctx.confirm({
      title: `Cancel ${label}?`,
      body: (
        <p>
          It leaves the queue and {j.user} sees it as cancelled. This cannot be undone; {j.user} can queue it
          again.
        </p>
      ),
      confirmLabel: 'Cancel the job',
      danger: true,
      run: async () => {
        await action(`/jobs/${encodeURIComponent(j.id)}/cancel`);
        return `Cancelled ${label}.`;
      },
    });
  const waited = (ctx.now - j.createdAt) / 1000;
  return (
    <tr class={j.front ? 'is-front' : ''}>
      <td class="num">{j.position}</td>
      <td>
        <b>{j.user}</b>
      </td>
      <td class="wf">
        <div class="wf-name" title={`${j.workflow ?? 'unnamed workflow'} (job #${j.number})`}>
          {j.workflow ?? <span class="muted">unnamed workflow</span>}
          {j.front ? <span class="tag tag-front">front</span> : null}
        </div>
        <div class="wf-models" title={j.models.join('\n')}>
          {j.models.length === 0 ? 'no model files' : j.models.map(modelName).join(', ')}
        </div>
      </td>
      <td class="num" title={`queued ${fullTime(j.createdAt)}`}>
        {shortDuration(waited)}
      </td>
      <td>
        <button
          type="button"
          class={`linklike prio prio-${j.priority}`}
          aria-label={`Priority of ${label}: ${j.priority}. Change`}
          onClick={() =>
            ctx.open({ kind: 'priority', jobId: j.id, number: j.number, user: j.user, priority: j.priority })
          }
        >
          {PRIORITY_TEXT[j.priority] ?? j.priority}
        </button>
      </td>
      <td class="num">{j.attempts}</td>
      <td class="actions">
        <button type="button" class="btn btn-small" onClick={front} aria-label={`Move ${label} to the front`}>
          To front
        </button>
        <button
          type="button"
          class="btn btn-small btn-danger-ghost"
          onClick={cancel}
          aria-label={`Cancel ${label}`}
        >
          Cancel
        </button>
      </td>
    </tr>
  );
}

export function QueueSection({ ctx }: { ctx: Ctx }) {
  const { pending, queue } = ctx.s;
  return (
    <Section id="queue" title="Waiting" count={queue.counts.pending}>
      {pending.length === 0 ? (
        <Empty title="Nobody is waiting">
          <p>
            Jobs appear here the moment participants press Queue in their ComfyUI, in the order they will run.
          </p>
        </Empty>
      ) : (
        <div class="table-wrap">
          <table class="table">
            <caption class="sr-only">Waiting jobs, in the order they will run</caption>
            <thead>
              <tr>
                <th scope="col" class="num">
                  #
                </th>
                <th scope="col">User</th>
                <th scope="col">Workflow and models</th>
                <th scope="col" class="num">
                  Waiting
                </th>
                <th scope="col">Priority</th>
                <th scope="col" class="num" title="Attempts: how often a GPU took it">
                  Tries
                </th>
                <th scope="col">
                  <span class="sr-only">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {pending.map((j) => (
                <Row key={j.id} ctx={ctx} j={j} />
              ))}
            </tbody>
          </table>
        </div>
      )}
    </Section>
  );
}
