import { useCallback, useEffect, useMemo, useState } from 'preact/hooks';
import type { LiveMessage, LiveSections, MeInfo, QueueMode, SamplePoint } from '../../view-types.js';
import { ActivitySection } from './activity.js';
import { AutoscaleSection } from './autoscale.js';
import { ApiError, action, connectLive, loadMe, type LiveStatus } from './api.js';
import { ChartsSection } from './charts.js';
import type { Ctx, FormDialog } from './ctx.js';
import { ConfirmDialog, type ConfirmSpec } from './dialog.js';
import { FailuresSection } from './failures.js';
import { FormDialogs } from './forms.js';
import { MODE_HELP, MODE_LABEL, clock } from './format.js';
import { ParticipantsSection } from './participants.js';
import { QueueSection } from './queue.js';
import { TemplatesSection } from './templates.js';
import { WorkersSection } from './workers.js';

const MODES: QueueMode[] = ['fifo', 'round_robin', 'priority'];
const KEEP_POINTS = 2200;
const LARGE_KEY = 'comfy-multi.admin.large-text';

interface Toast {
  id: number;
  kind: 'ok' | 'error';
  text: string;
}

function Tile({
  label,
  value,
  hint,
  tone,
}: {
  label: string;
  value: string | number;
  hint?: string;
  tone?: string;
}) {
  return (
    <div class={`tile ${tone ?? ''}`}>
      <div class="tile-value">{value}</div>
      <div class="tile-label">{label}</div>
      {hint ? <div class="tile-hint">{hint}</div> : null}
    </div>
  );
}

function LiveBadge({ status }: { status: LiveStatus }) {
  const text = status === 'live' ? 'Live' : status === 'connecting' ? 'Connecting…' : 'Reconnecting…';
  return (
    <span class={`live live-${status}`} role="status">
      <span class="dot" aria-hidden="true" />
      {text}
    </span>
  );
}

export function App() {
  const [me, setMe] = useState<MeInfo | null>(null);
  const [fatal, setFatal] = useState<string | null>(null);
  const [sections, setSections] = useState<LiveSections | null>(null);
  const [series, setSeries] = useState<SamplePoint[]>([]);
  const [sampleMs, setSampleMs] = useState(10_000);
  const [status, setStatus] = useState<LiveStatus>('connecting');
  const [skew, setSkew] = useState(0);
  const [now, setNow] = useState(Date.now());
  const [confirm, setConfirm] = useState<ConfirmSpec | null>(null);
  const [dialog, setDialog] = useState<FormDialog | null>(null);
  const [toasts, setToasts] = useState<Toast[]>([]);
  const [large, setLarge] = useState(() => localStorage.getItem(LARGE_KEY) === '1');

  useEffect(() => {
    document.documentElement.classList.toggle('large', large);
    localStorage.setItem(LARGE_KEY, large ? '1' : '0');
  }, [large]);

  useEffect(() => {
    const t = window.setInterval(() => setNow(Date.now()), 1000);
    return () => window.clearInterval(t);
  }, []);

  const onMessage = useCallback((m: LiveMessage) => {
    setSkew(m.serverTime - Date.now());
    if (m.type === 'hello') {
      setSections(m.sections);
      setSeries(m.series);
      setSampleMs(m.sampleMs);
    } else if (m.type === 'patch') {
      setSections((prev) => (prev ? { ...prev, ...m.sections } : prev));
    } else if (m.type === 'sample') {
      setSeries((prev) => {
        const next = [...prev, m.point];
        return next.length > KEEP_POINTS ? next.slice(next.length - KEEP_POINTS) : next;
      });
    }
  }, []);

  useEffect(() => {
    let stop: (() => void) | undefined;
    loadMe()
      .then((info) => {
        setMe(info);
        stop = connectLive(onMessage, setStatus);
      })
      .catch((err: unknown) => setFatal(err instanceof Error ? err.message : String(err)));
    return () => stop?.();
  }, [onMessage]);

  const notify = useCallback((text: string, kind: 'ok' | 'error' = 'ok') => {
    const id = Date.now() + Math.random();
    setToasts((t) => [...t.slice(-2), { id, kind, text }]);
    window.setTimeout(() => setToasts((t) => t.filter((x) => x.id !== id)), kind === 'error' ? 10_000 : 4000);
  }, []);

  const pending = sections?.queue.counts.pending ?? 0;
  useEffect(() => {
    document.title = `${pending > 0 ? `(${pending}) ` : ''}Workshop dashboard · comfy-multi`;
  }, [pending]);

  const ctx: Ctx | null = useMemo(
    () =>
      sections
        ? {
            s: sections,
            now: now + skew,
            confirm: setConfirm,
            open: setDialog,
            notify,
            origin: location.origin,
          }
        : null,
    [sections, now, skew, notify],
  );

  if (fatal) {
    return (
      <main class="loading">
        <h1>The dashboard could not start</h1>
        <p>{fatal}</p>
        <p>
          <a href="/admin/">Reload</a> · <a href="/logout">Sign in again</a>
        </p>
      </main>
    );
  }

  if (!ctx || !me) {
    return (
      <main class="loading" aria-busy="true">
        <p>Connecting to the workshop…</p>
      </main>
    );
  }

  const s = ctx.s;
  const q = s.queue;
  const online = s.workers.filter((w) => w.status !== 'offline');
  const usable = online.filter((w) => w.status === 'idle' || w.status === 'busy').length;
  const participantsOnline = s.participants.filter((p) => p.online > 0).length;

  const switchMode = (m: QueueMode) => {
    if (m === q.mode) return;
    setConfirm({
      title: `Switch the queue to ${MODE_LABEL[m]}?`,
      body: (
        <>
          <p>{MODE_HELP[m]}</p>
          <p class="muted">Takes effect for the next job a GPU takes; running jobs are not touched.</p>
        </>
      ),
      confirmLabel: `Switch to ${MODE_LABEL[m]}`,
      run: async () => {
        await action('/queue/mode', { mode: m });
        return `The queue now runs in ${MODE_LABEL[m]} order.`;
      },
    });
  };

  const togglePause = () =>
    setConfirm(
      q.paused
        ? {
            title: 'Resume the queue?',
            body: <p>GPUs start taking waiting jobs again right away.</p>,
            confirmLabel: 'Resume the queue',
            run: async () => {
              await action('/queue/pause', { paused: false });
              return 'The queue is running again.';
            },
          }
        : {
            title: 'Pause the queue?',
            body: (
              <p>
                No new job starts until you resume; jobs already running finish. Participants can still queue
                jobs.
              </p>
            ),
            confirmLabel: 'Pause the queue',
            danger: true,
            run: async () => {
              await action('/queue/pause', { paused: true });
              return 'The queue is paused.';
            },
          },
    );

  const testAlert = () =>
    setConfirm({
      title: 'Send a test alert?',
      body: s.health.alertsWebhook ? (
        <p>A test message goes to the alert webhook (ALERT_WEBHOOK_URL), so you can check it arrives.</p>
      ) : (
        <p>
          No alert webhook is set (ALERT_WEBHOOK_URL), so alerts only show on this page. The test shows how
          one looks.
        </p>
      ),
      confirmLabel: 'Send test alert',
      run: async () => {
        const r = await action<{ delivery: string }>('/alerts/test');
        return r.delivery === 'sent'
          ? 'The test alert was delivered.'
          : r.delivery === 'failed'
            ? 'The alert webhook did not accept the test alert; check the server log.'
            : 'Test alert recorded (no webhook set).';
      },
    });

  const onActionError = (err: unknown) =>
    notify(err instanceof ApiError || err instanceof Error ? err.message : String(err), 'error');

  return (
    <>
      <a class="skip" href="#main">
        Skip to the dashboard
      </a>
      <header class="topbar">
        <div class="brand">
          <span class="logo" aria-hidden="true">
            ◆
          </span>
          comfy-multi <span class="brand-sub">Workshop dashboard</span>
        </div>
        <LiveBadge status={status} />
        <span class="spacer" />
        <span class="topbar-time" title="Local time">
          {clock(now)}
        </span>
        <button type="button" class="btn btn-ghost" aria-pressed={large} onClick={() => setLarge(!large)}>
          {large ? 'Normal text' : 'Large text'}
        </button>
        <span class="who">
          <span class="sr-only">Signed in as </span>
          {me.user}
        </span>
        <a class="btn btn-ghost" href="/logout">
          Sign out
        </a>
      </header>

      <main id="main" tabIndex={-1}>
        {status !== 'live' ? (
          <div class="banner banner-warn" role="alert">
            Connection to the server lost — reconnecting. What you see may be out of date.
          </div>
        ) : null}
        {q.paused ? (
          <div class="banner banner-warn">
            <b>The queue is paused.</b> No new job starts until you resume it.
            <button type="button" class="btn btn-small" onClick={togglePause}>
              Resume
            </button>
          </div>
        ) : null}
        {s.broadcast ? (
          <div class="banner banner-info">
            <span>
              <b>Participants see:</b> “{s.broadcast.message}”{' '}
              <span class="muted small">
                since {clock(s.broadcast.at)} · {s.broadcast.by}
              </span>
            </span>
            <button type="button" class="btn btn-small" onClick={() => setDialog({ kind: 'broadcast' })}>
              Change
            </button>
          </div>
        ) : null}

        <div class="tiles" role="group" aria-label="At a glance">
          <Tile
            label="waiting"
            value={q.counts.pending}
            tone={q.counts.pending > 0 && usable === 0 ? 'tone-bad' : ''}
          />
          <Tile label="running" value={q.counts.running} />
          <Tile
            label="next on a GPU"
            value={q.next}
            hint={q.next > 0 ? 'sent ahead, not started' : undefined}
          />
          <Tile label="done" value={q.counts.completed} />
          <Tile label="failed" value={q.counts.failed} tone={q.counts.failed > 0 ? 'tone-warn' : ''} />
          <Tile
            label="GPUs online"
            value={`${online.length}`}
            hint={online.length !== usable ? `${usable} taking jobs` : undefined}
            tone={online.length === 0 ? 'tone-bad' : ''}
          />
          <Tile label="participants online" value={`${participantsOnline} / ${s.participants.length}`} />
        </div>

        <div class="controls" role="group" aria-label="Queue controls">
          <div class="control">
            <span class="control-label" id="mode-label">
              Queue order
            </span>
            <div class="segmented" role="group" aria-labelledby="mode-label">
              {MODES.map((m) => (
                <button
                  key={m}
                  type="button"
                  aria-pressed={q.mode === m}
                  title={MODE_HELP[m]}
                  onClick={() => switchMode(m)}
                >
                  {MODE_LABEL[m]}
                </button>
              ))}
            </div>
          </div>
          <div class="control">
            <button type="button" class={q.paused ? 'btn btn-primary' : 'btn'} onClick={togglePause}>
              {q.paused ? 'Resume queue' : 'Pause queue'}
            </button>
          </div>
          <div class="control">
            <span class="control-label">Per participant</span>
            <span>
              {q.limits.maxPendingPerUser} waiting · {q.limits.maxRunningPerUser} running
            </span>
            <button type="button" class="btn btn-small" onClick={() => setDialog({ kind: 'queue-limits' })}>
              Change
            </button>
          </div>
          <span class="spacer" />
          <div class="control">
            <button type="button" class="btn" onClick={() => setDialog({ kind: 'broadcast' })}>
              Message everyone…
            </button>
          </div>
        </div>

        <div class="grid">
          <div class="col col-a">
            <WorkersSection ctx={ctx} />
            <AutoscaleSection ctx={ctx} />
            <ChartsSection series={series} sampleMs={sampleMs} />
            <FailuresSection ctx={ctx} />
            <TemplatesSection ctx={ctx} />
          </div>
          <div class="col col-b">
            <QueueSection ctx={ctx} />
            <ParticipantsSection ctx={ctx} />
            <ActivitySection ctx={ctx} />
          </div>
        </div>

        <footer class="foot small muted">
          <span>
            comfy-multi {s.health.version} · {s.health.store} store · up since {clock(s.health.startedAt)}
            {s.health.cluster
              ? ` · process ${s.health.cluster.process} of ${s.health.cluster.processes}`
              : ''}
          </span>
          <span>ComfyUI frontend: {s.health.frontend}</span>
          <span>
            Alerts: {s.health.alertsWebhook ? 'webhook set' : 'no webhook (ALERT_WEBHOOK_URL)'}
            {s.health.recentAlerts[0]
              ? ` · last: ${s.health.recentAlerts[0].title} at ${clock(s.health.recentAlerts[0].at)}`
              : ''}{' '}
            <button type="button" class="linklike" onClick={testAlert}>
              Send a test alert
            </button>
          </span>
          <span>
            <a href="/metrics">Metrics</a> · <a href="/api/v1/status">Status</a>
          </span>
        </footer>
      </main>

      {confirm ? (
        <ConfirmDialog
          spec={confirm}
          onClose={() => setConfirm(null)}
          onDone={(msg) => {
            if (msg) notify(msg);
          }}
          onError={onActionError}
        />
      ) : null}
      {dialog ? <FormDialogs ctx={ctx} dialog={dialog} onClose={() => setDialog(null)} /> : null}

      <div class="toasts" aria-live="polite">
        {toasts.map((t) => (
          <div key={t.id} class={`toast toast-${t.kind}`} role={t.kind === 'error' ? 'alert' : 'status'}>
            <span>{t.text}</span>
            <button
              type="button"
              class="toast-close"
              aria-label="Dismiss"
              onClick={() => setToasts((all) => all.filter((x) => x.id !== t.id))}
            >
              ×
            </button>
          </div>
        ))}
      </div>
    </>
  );
}
