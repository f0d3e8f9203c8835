import type { HeldRow, OrphanRow, WorkerRow } from '../../view-types.js';
import { action } from './api.js';
import type { Ctx } from './ctx.js';
import { ago, clock, duration, fullTime, gigabytes, modelName } from './format.js';
import { Empty, Progress, Section } from './section.js';

const STATUS_TEXT: Record<WorkerRow['status'], string> = {
  idle: 'Idle',
  busy: 'Busy',
  draining: 'Draining',
  unhealthy: 'ComfyUI unhealthy',
  offline: 'Offline',
};

function jobTitle(h: { number: number | null; user: string; workflow: string | null }) {
  return (
    <>
      <b>{h.user}</b>
      <span class="muted"> · {h.workflow ?? 'unnamed workflow'}</span>
      {h.number !== null ? <span class="muted"> · #{h.number}</span> : null}
    </>
  );
}

function cancelHeld(ctx: Ctx, h: HeldRow | OrphanRow, jobId: string) {
  ctx.confirm({
    title: `Cancel job #${h.number ?? '?'} of ${h.user}?`,
    body: (
      <p>
        ComfyUI stops it at once and {h.user} sees it as cancelled. Outputs already saved stay in their
        gallery. This cannot be undone.
      </p>
    ),
    confirmLabel: 'Cancel the job',
    danger: true,
    run: async () => {
      await action(`/jobs/${encodeURIComponent(jobId)}/cancel`);
      return `Cancelled job #${h.number ?? '?'} of ${h.user}.`;
    },
  });
}

function HeldJob({ ctx, h, worker }: { ctx: Ctx; h: HeldRow; worker: WorkerRow }) {
  if (h.state !== 'running') {
    return (
      <li class="held next">
        <span class="tag">{h.state === 'queued' ? 'next' : 'sent'}</span> {jobTitle(h)}
      </li>
    );
  }
  const p = h.progress;
  const elapsed = h.startedAt !== null ? (ctx.now - h.startedAt) / 1000 : null;
  return (
    <li class="held running">
      <div class="held-line">
        <span class="tag tag-run">running</span> {jobTitle(h)}
        <span class="spacer" />
        <span class="muted" title={h.startedAt ? `started ${fullTime(h.startedAt)}` : ''}>
          {duration(elapsed)}
        </span>
        <button
          type="button"
          class="btn btn-small btn-danger-ghost"
          aria-label={`Cancel job #${h.number ?? ''} of ${h.user} on ${worker.name}`}
          onClick={() => cancelHeld(ctx, h, h.jobId)}
        >
          Cancel
        </button>
      </div>
      <Progress
        value={p?.value ?? 0}
        max={p?.max ?? 1}
        label={`Progress of job #${h.number ?? ''} of ${h.user}`}
      />
      <div class="held-node">
        {h.nodeType || h.node ? (
          <>
            Node <b>{h.nodeType ?? 'node'}</b>
            {h.node ? <span class="muted"> #{h.node}</span> : null}
          </>
        ) : (
          <span class="muted">starting…</span>
        )}
        {p ? (
          <span class="muted">
            {' '}
            · step {p.value} of {p.max}
          </span>
        ) : null}
      </div>
    </li>
  );
}

function Worker({ ctx, w }: { ctx: Ctx; w: WorkerRow }) {
  const vramPct = w.vramTotal > 0 ? w.vramUsed / w.vramTotal : 0;
  const offline = w.status === 'offline';
  const toggleDrain = () =>
    ctx.confirm(
      w.draining
        ? {
            title: `Give jobs to ${w.name} again?`,
            body: <p>The worker takes new jobs from the queue as soon as it is free.</p>,
            confirmLabel: 'Undrain',
            run: async () => {
              await action(`/workers/${encodeURIComponent(w.id)}/drain`, { draining: false });
              return `${w.name} takes jobs again.`;
            },
          }
        : {
            title: `Drain ${w.name}?`,
            body: (
              <p>
                It finishes the jobs it holds and takes no new ones; the other GPUs keep serving the queue.
                Drain a GPU before shutting it down, so no job is cut off.
              </p>
            ),
            confirmLabel: 'Drain',
            run: async () => {
              await action(`/workers/${encodeURIComponent(w.id)}/drain`, { draining: true });
              return `${w.name} is draining.`;
            },
          },
    );
  return (
    <article class={`worker status-${w.status}`} aria-label={`Worker ${w.name}, ${STATUS_TEXT[w.status]}`}>
      <div class="worker-head">
        <span class={`pill pill-${w.status}`}>{w.stopping ? 'Stopping' : STATUS_TEXT[w.status]}</span>
        <h3 class="worker-name" title={w.process ? `${w.id} (control-plane process ${w.process})` : w.id}>
          {w.name}
        </h3>
        <span class="muted small">ComfyUI {w.comfyuiVersion || '?'}</span>
        <span class="spacer" />
        {!offline ? (
          <button
            type="button"
            class="btn btn-small"
            onClick={toggleDrain}
            aria-label={`${w.draining ? 'Undrain' : 'Drain'} worker ${w.name}`}
          >
            {w.draining ? 'Undrain' : 'Drain'}
          </button>
        ) : null}
      </div>
      <div class="worker-facts">
        <span title={w.gpus.join(', ')}>{w.gpus[0] ?? 'GPU'}</span>
        {w.vramTotal > 0 ? (
          <span class="vram" title={`${gigabytes(w.vramUsed)} of ${gigabytes(w.vramTotal)} VRAM in use`}>
            VRAM
            <span class="meter" aria-hidden="true">
              <span style={{ width: `${Math.round(vramPct * 100)}%` }} class={vramPct > 0.9 ? 'hot' : ''} />
            </span>
            {gigabytes(w.vramUsed)} / {gigabytes(w.vramTotal)}
          </span>
        ) : null}
        <span title={fullTime(w.lastHeartbeatAt)}>
          {offline
            ? `offline since ${clock(w.disconnectedAt)}`
            : `heartbeat ${ago(w.lastHeartbeatAt, ctx.now)}`}
        </span>
      </div>
      {w.held.length > 0 ? (
        <ul class="held-list">
          {w.held.map((h) => (
            <HeldJob key={h.jobId} ctx={ctx} h={h} worker={w} />
          ))}
        </ul>
      ) : (
        <p class="worker-idle muted">
          {offline
            ? 'Not connected. Jobs it held return to the queue when their leases lapse.'
            : w.stopping
              ? 'Shutting down: finishes what it holds, takes no new jobs.'
              : w.draining
                ? 'Drained: takes no new jobs.'
                : 'Waiting for a job.'}
        </p>
      )}
      <div class="worker-foot small muted">
        <span>
          Warm models:{' '}
          {w.warmModels.length > 0 ? (
            <span title={w.warmModels.join('\n')}>{w.warmModels.map(modelName).join(', ')}</span>
          ) : (
            'none yet'
          )}
        </span>
        <span>
          {w.jobsCompleted} done · {w.jobsFailed} failed
        </span>
      </div>
    </article>
  );
}

export function WorkersSection({ ctx }: { ctx: Ctx }) {
  const { workers, orphans } = ctx.s;
  const online = workers.filter((w) => w.status !== 'offline').length;
  return (
    <Section id="gpus" title="GPUs" count={`${online} online`}>
      {online === 0 ? (
        <Empty title="No GPU worker is connected">
          <p>Jobs wait in the queue until one connects. On each GPU machine, next to its ComfyUI, start:</p>
          <pre class="cmd">
            comfy-multi worker --server {ctx.origin} --token &lt;token&gt; --comfyui http://127.0.0.1:8188
          </pre>
          <p>
            Create a token on this server with <code>comfy-multi workers token create gpu1</code>.
          </p>
        </Empty>
      ) : null}
      {workers.length > 0 ? (
        <div class="workers">
          {workers.map((w) => (
            <Worker key={w.id} ctx={ctx} w={w} />
          ))}
        </div>
      ) : null}
      {orphans.length > 0 ? (
        <div class="orphans">
          <h3 class="sub-title">Running without a worker</h3>
          <p class="small muted">
            Their worker went away. Each returns to its place in the queue when its lease lapses.
          </p>
          <ul class="plain">
            {orphans.map((o) => (
              <li key={o.id} class="orphan">
                <span class="orphan-job">{jobTitle(o)}</span>
                <span class="muted small orphan-note">
                  was on {o.workerId ?? '?'} · back in the queue by {clock(o.leaseExpiresAt)}
                </span>
                <button
                  type="button"
                  class="btn btn-small btn-danger-ghost"
                  aria-label={`Cancel job #${o.number} of ${o.user}`}
                  onClick={() => cancelHeld(ctx, o, o.id)}
                >
                  Cancel
                </button>
              </li>
            ))}
          </ul>
        </div>
      ) : null}
    </Section>
  );
}
