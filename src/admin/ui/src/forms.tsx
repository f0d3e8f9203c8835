import type { ComponentChildren } from 'preact';
import { useRef, useState } from 'preact/hooks';
import type { Priority } from '../../view-types.js';
import { action } from './api.js';
import type { Ctx, FormDialog } from './ctx.js';
import { Dialog } from './dialog.js';
import { MODE_LABEL, clock } from './format.js';

const PRIORITIES: { value: Priority; label: string; help: string }[] = [
  { value: 'instructor', label: 'Instructor', help: 'Demos: ahead of everything else.' },
  { value: 'high', label: 'High', help: 'Ahead of normal jobs.' },
  { value: 'normal', label: 'Normal', help: 'The default for participants.' },
  { value: 'low', label: 'Low', help: 'Only when nothing else waits.' },
];

interface FormProps<K extends FormDialog['kind']> {
  ctx: Ctx;
  d: Extract<FormDialog, { kind: K }>;
  onClose: () => void;
}

/** Shared footer and submit logic of the form dialogs. */
function useSubmit(ctx: Ctx, onClose: () => void) {
  const [busy, setBusy] = useState(false);
  const submit = async (run: () => Promise<string>) => {
    setBusy(true);
    try {
      const msg = await run();
      onClose();
      ctx.notify(msg);
    } catch (err) {
      setBusy(false);
      ctx.notify(err instanceof Error ? err.message : String(err), 'error');
    }
  };
  return { busy, submit };
}

function Footer({
  busy,
  label,
  onClose,
  form,
}: {
  busy: boolean;
  label: string;
  onClose: () => void;
  form: string;
}) {
  return (
    <>
      <button type="button" class="btn btn-cancel" onClick={onClose} disabled={busy}>
        Keep as is
      </button>
      <button type="submit" form={form} class="btn btn-primary" disabled={busy} aria-busy={busy}>
        {busy ? 'Working…' : label}
      </button>
    </>
  );
}

/** A dialog around one form, sent by the footer's primary button (or Enter in a field). */
function SubmitDialog({
  title,
  onClose,
  initialFocus,
  formId,
  label,
  busy,
  blocked = false,
  onSubmit,
  children,
}: {
  title: string;
  onClose: () => void;
  initialFocus?: string;
  formId: string;
  label: string;
  busy: boolean;
  /** What was typed cannot be sent: the button is off and Enter does nothing. */
  blocked?: boolean;
  onSubmit: () => void;
  children: ComponentChildren;
}) {
  return (
    <Dialog
      title={title}
      onClose={onClose}
      initialFocus={initialFocus}
      footer={<Footer busy={busy || blocked} label={label} onClose={onClose} form={formId} />}
    >
      <form
        id={formId}
        onSubmit={(e) => {
          e.preventDefault();
          if (!blocked) onSubmit();
        }}
      >
        {children}
      </form>
    </Dialog>
  );
}

/** The radio list of priority levels, one per option with its help line. */
function Choices<T extends string>({
  name,
  options,
  value,
  onChange,
}: {
  name: string;
  options: { value: T; label: string; help: string }[];
  value: T;
  onChange: (v: T) => void;
}) {
  return (
    <fieldset class="choices">
      <legend class="sr-only">Priority</legend>
      {options.map((p) => (
        <label key={p.value} class="choice">
          <input
            type="radio"
            name={name}
            value={p.value}
            checked={value === p.value}
            onChange={() => onChange(p.value)}
          />
          <span>
            <b>{p.label}</b> <span class="muted">{p.help}</span>
          </span>
        </label>
      ))}
    </fieldset>
  );
}

function PriorityDialog({ ctx, d, onClose }: FormProps<'priority'>) {
  const [value, setValue] = useState<Priority>(d.priority as Priority);
  const { busy, submit } = useSubmit(ctx, onClose);
  const mode = ctx.s.queue.mode;
  return (
    <SubmitDialog
      title={`Priority of job #${d.number} (${d.user})`}
      onClose={onClose}
      initialFocus="input:checked"
      formId="prio-form"
      label="Set priority"
      busy={busy}
      onSubmit={() =>
        void submit(async () => {
          await action(`/jobs/${encodeURIComponent(d.jobId)}/priority`, { priority: value });
          return `Job #${d.number} of ${d.user} now has ${value} priority.`;
        })
      }
    >
      <Choices name="priority" options={PRIORITIES} value={value} onChange={setValue} />
      {mode !== 'priority' ? (
        <p class="note">
          The queue is in <b>{MODE_LABEL[mode]}</b> order: priority only counts in <b>Priority</b> order. To
          run this job next now, use <b>To front</b>.
        </p>
      ) : null}
    </SubmitDialog>
  );
}

const USER_LEVELS: { value: 'high' | 'normal' | 'low'; label: string; help: string }[] = [
  { value: 'high', label: 'High', help: 'All their jobs go ahead of normal ones.' },
  { value: 'normal', label: 'Normal', help: 'Like everybody else (the default).' },
  { value: 'low', label: 'Low', help: 'Their jobs run only when nothing else waits.' },
];

/** Raise (or lower) one participant: every job of theirs, waiting now and queued later. */
function UserPriorityDialog({ ctx, d, onClose }: FormProps<'user-priority'>) {
  const row = ctx.s.participants.find((p) => p.user === d.user);
  const [value, setValue] = useState<'high' | 'normal' | 'low'>(row?.priority ?? 'normal');
  const { busy, submit } = useSubmit(ctx, onClose);
  return (
    <SubmitDialog
      title={`Priority of ${d.user}`}
      onClose={onClose}
      initialFocus="input:checked"
      formId="uprio-form"
      label="Set priority"
      busy={busy}
      onSubmit={() =>
        void submit(async () => {
          const r = await action<{ jobsChanged: number }>(`/users/${encodeURIComponent(d.user)}/priority`, {
            priority: value === 'normal' ? null : value,
          });
          return `${d.user} now has ${value} priority (${r.jobsChanged} waiting job(s) changed).`;
        })
      }
    >
      <p>For every job of {d.user}: those waiting now and those they queue later.</p>
      <Choices name="user-priority" options={USER_LEVELS} value={value} onChange={setValue} />
      {ctx.s.queue.mode !== 'priority' ? (
        <p class="note">
          The queue is in <b>{MODE_LABEL[ctx.s.queue.mode]}</b> order: priority only counts in <b>Priority</b>{' '}
          order.
        </p>
      ) : null}
    </SubmitDialog>
  );
}

function numberOrNull(v: string): number | null {
  const n = Number(v);
  return v.trim() === '' || !Number.isInteger(n) || n < 1 ? null : n;
}

function UserLimitsDialog({ ctx, d, onClose }: FormProps<'user-limits'>) {
  const row = ctx.s.participants.find((p) => p.user === d.user);
  const defaults = ctx.s.queue.limits;
  const [pending, setPending] = useState(String(row?.limits?.maxPendingPerUser ?? ''));
  const [running, setRunning] = useState(String(row?.limits?.maxRunningPerUser ?? ''));
  const { busy, submit } = useSubmit(ctx, onClose);
  const bad =
    (pending.trim() !== '' && numberOrNull(pending) === null) ||
    (running.trim() !== '' && numberOrNull(running) === null);
  return (
    <SubmitDialog
      title={`Limits of ${d.user}`}
      onClose={onClose}
      formId="ulimits-form"
      label="Save limits"
      busy={busy}
      blocked={bad}
      onSubmit={() =>
        void submit(async () => {
          await action(`/users/${encodeURIComponent(d.user)}/limits`, {
            maxPendingPerUser: numberOrNull(pending),
            maxRunningPerUser: numberOrNull(running),
          });
          return `Saved the limits of ${d.user}.`;
        })
      }
    >
      <p>Leave a field empty to use the limit every participant has.</p>
      <div class="fields">
        <label class="field">
          <span>Most jobs waiting</span>
          <input
            type="number"
            min={1}
            max={100000}
            inputMode="numeric"
            placeholder={`${defaults.maxPendingPerUser} (everyone’s)`}
            value={pending}
            onInput={(e) => setPending((e.target as HTMLInputElement).value)}
          />
        </label>
        <label class="field">
          <span>Most jobs running at once</span>
          <input
            type="number"
            min={1}
            max={1000}
            inputMode="numeric"
            placeholder={`${defaults.maxRunningPerUser} (everyone’s)`}
            value={running}
            onInput={(e) => setRunning((e.target as HTMLInputElement).value)}
          />
        </label>
      </div>
      {bad ? <p class="note bad">Use whole numbers of 1 or more, or leave the field empty.</p> : null}
    </SubmitDialog>
  );
}

function QueueLimitsDialog({ ctx, onClose }: FormProps<'queue-limits'>) {
  const l = ctx.s.queue.limits;
  const [pending, setPending] = useState(String(l.maxPendingPerUser));
  const [running, setRunning] = useState(String(l.maxRunningPerUser));
  const { busy, submit } = useSubmit(ctx, onClose);
  const p = numberOrNull(pending);
  const r = numberOrNull(running);
  return (
    <SubmitDialog
      title="Limits for every participant"
      onClose={onClose}
      formId="qlimits-form"
      label="Save limits"
      busy={busy}
      blocked={p === null || r === null}
      onSubmit={() =>
        void submit(async () => {
          await action('/queue/limits', { maxPendingPerUser: p, maxRunningPerUser: r });
          return `Every participant may now have ${p} waiting and ${r} running.`;
        })
      }
    >
      <div class="fields">
        <label class="field">
          <span>Most jobs waiting per participant</span>
          <input
            type="number"
            min={1}
            max={100000}
            required
            value={pending}
            onInput={(e) => setPending((e.target as HTMLInputElement).value)}
          />
        </label>
        <label class="field">
          <span>Most jobs running at once per participant</span>
          <input
            type="number"
            min={1}
            max={1000}
            required
            value={running}
            onInput={(e) => setRunning((e.target as HTMLInputElement).value)}
          />
        </label>
      </div>
      <p class="note">Limits set for one participant (in the Participants table) still apply to them.</p>
    </SubmitDialog>
  );
}

function BroadcastDialog({ ctx, onClose }: FormProps<'broadcast'>) {
  const current = ctx.s.broadcast;
  const [text, setText] = useState(current?.message ?? '');
  const { busy, submit } = useSubmit(ctx, onClose);
  const send = (message: string) =>
    submit(async () => {
      await action('/broadcast', { message });
      return message.trim() === ''
        ? 'The broadcast message is cleared.'
        : 'Every participant now sees your message.';
    });
  return (
    <Dialog
      title="Message to every participant"
      onClose={onClose}
      footer={
        <>
          <button type="button" class="btn btn-cancel" onClick={onClose} disabled={busy}>
            Keep as is
          </button>
          {current ? (
            <button type="button" class="btn btn-danger-ghost" disabled={busy} onClick={() => void send('')}>
              Clear message
            </button>
          ) : null}
          <button type="submit" form="bc-form" class="btn btn-primary" disabled={busy || text.trim() === ''}>
            {busy ? 'Working…' : 'Show to everyone'}
          </button>
        </>
      }
    >
      <form
        id="bc-form"
        onSubmit={(e) => {
          e.preventDefault();
          if (text.trim() !== '') void send(text);
        }}
      >
        <label class="field">
          <span>Shown in the banner of every participant’s ComfyUI within a few seconds</span>
          <textarea
            rows={3}
            maxLength={1000}
            value={text}
            placeholder="e.g. Break until 14:30 — the queue keeps running."
            onInput={(e) => setText((e.target as HTMLTextAreaElement).value)}
          />
        </label>
        {current ? (
          <p class="note">
            Showing now (since {clock(current.at)}, by {current.by}): “{current.message}”
          </p>
        ) : null}
      </form>
    </Dialog>
  );
}

function PasswordDialog({ d, onClose }: FormProps<'password'>) {
  const [copied, setCopied] = useState(false);
  const code = useRef<HTMLElement>(null);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(d.password);
      setCopied(true);
      return;
    } catch {
      // No clipboard API over plain http on a LAN address: select it, and try the old way.
    }
    const el = code.current;
    if (!el) return;
    const range = document.createRange();
    range.selectNodeContents(el);
    const sel = window.getSelection();
    sel?.removeAllRanges();
    sel?.addRange(range);
    setCopied(document.execCommand('copy'));
  };
  return (
    <Dialog
      title={`New password of ${d.user}`}
      onClose={onClose}
      initialFocus=".btn-copy"
      footer={
        <button type="button" class="btn btn-primary" onClick={onClose}>
          Done — I have passed it on
        </button>
      }
    >
      <p>This is shown only once. Give it to {d.user}; they sign in at this server’s /login page.</p>
      <div class="secret">
        <code class="secret-value" ref={code}>
          {d.password}
        </code>
        <button type="button" class="btn btn-small btn-copy" onClick={() => void copy()}>
          {copied ? 'Copied' : 'Copy'}
        </button>
      </div>
    </Dialog>
  );
}

export function FormDialogs({ ctx, dialog, onClose }: { ctx: Ctx; dialog: FormDialog; onClose: () => void }) {
  switch (dialog.kind) {
    case 'priority':
      return <PriorityDialog ctx={ctx} d={dialog} onClose={onClose} />;
    case 'user-limits':
      return <UserLimitsDialog ctx={ctx} d={dialog} onClose={onClose} />;
    case 'user-priority':
      return <UserPriorityDialog ctx={ctx} d={dialog} onClose={onClose} />;
    case 'queue-limits':
      return <QueueLimitsDialog ctx={ctx} d={dialog} onClose={onClose} />;
    case 'broadcast':
      return <BroadcastDialog ctx={ctx} d={dialog} onClose={onClose} />;
    case 'password':
      return <PasswordDialog ctx={ctx} d={dialog} onClose={onClose} />;
  }
}
