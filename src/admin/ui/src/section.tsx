import type { ComponentChildren } from 'preact';

/** A titled panel of the dashboard, with an optional count and header actions. */
export function Section({
  id,
  title,
  count,
  actions,
  children,
  class: cls,
}: {
  id: string;
  title: string;
  count?: number | string | undefined;
  actions?: ComponentChildren;
  children: ComponentChildren;
  class?: string;
}) {
  return (
    <section id={id} class={`panel ${cls ?? ''}`} aria-labelledby={`${id}-title`}>
      <div class="panel-head">
        <h2 id={`${id}-title`}>
          {title}
          {count !== undefined ? <span class="count">{count}</span> : null}
        </h2>
        {actions ? <div class="panel-actions">{actions}</div> : null}
      </div>
      <div class="panel-body">{children}</div>
    </section>
  );
}

/** What an empty panel says: what is going on, and what to do about it. */
export function Empty({ title, children }: { title: string; children?: ComponentChildren }) {
  return (
    <div class="empty">
      <p class="empty-title">{title}</p>
      {children ? <div class="empty-text">{children}</div> : null}
    </div>
  );
}

export function Progress({ value, max, label }: { value: number; max: number; label: string }) {
  const pct = max > 0 ? Math.max(0, Math.min(100, (value / max) * 100)) : 0;
  return (
    <div
      class="progress"
      role="progressbar"
      aria-label={label}
      aria-valuemin={0}
      aria-valuemax={max}
      aria-valuenow={value}
    >
      <div class="progress-bar" style={{ width: `${pct}%` }} />
    </div>
  );
}
