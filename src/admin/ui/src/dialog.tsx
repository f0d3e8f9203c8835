import type { ComponentChildren } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';

const FOCUSABLE =
  'a[href], button:not([disabled]), input:not([disabled]), select:not([disabled]), textarea:not([disabled]), [tabindex]:not([tabindex="-1"])';

export interface DialogProps {
  title: string;
  onClose: () => void;
  children: ComponentChildren;
  /** Buttons row. */
  footer?: ComponentChildren;
  /** CSS selector of the element to focus first (default: the first field, else the last button). */
  initialFocus?: string;
  wide?: boolean;
}

/**
 * A modal dialog: the native `<dialog>` (the page behind becomes inert, Escape closes), plus a
 * focus trap so Tab cycles inside it, and focus returns to where it was when the dialog closes.
 */
export function Dialog({ title, onClose, children, footer, initialFocus, wide }: DialogProps) {
  const ref = useRef<HTMLDialogElement>(null);
  const titleId = useRef(`dlg-${Math.random().toString(36).slice(2)}`).current;

  useEffect(() => {
    const dialog = ref.current;
    if (!dialog) return;
    const previous = document.activeElement as HTMLElement | null;
    if (!dialog.open) dialog.showModal();
    const first =
      (initialFocus ? dialog.querySelector<HTMLElement>(initialFocus) : null) ??
      dialog.querySelector<HTMLElement>('input:not([type=hidden]), textarea, select') ??
      [...dialog.querySelectorAll<HTMLElement>('.dialog-footer button')].at(0) ??
      null;
    first?.focus();
    return () => {
      if (dialog.open) dialog.close();
      previous?.focus?.();
    };
  }, []);

  const onKeyDown = (e: KeyboardEvent) => {
    if (e.key !== 'Tab') return;
    const items = [...(ref.current?.querySelectorAll<HTMLElement>(FOCUSABLE) ?? [])].filter(
      (el) => el.offsetParent !== null,
    );
    if (items.length === 0) return;
    const first = items[0]!;
    const last = items[items.length - 1]!;
    if (e.shiftKey && document.activeElement === first) {
      e.preventDefault();
      last.focus();
    } else if (!e.shiftKey && document.activeElement === last) {
      e.preventDefault();
      first.focus();
    }
  };

  return (
    <dialog
      ref={ref}
      class={wide ? 'dialog wide' : 'dialog'}
      aria-labelledby={titleId}
      onKeyDown={onKeyDown}
      onCancel={(e) => {
        e.preventDefault();
        onClose();
      }}
    >
      <h2 id={titleId} class="dialog-title">
        {title}
      </h2>
      <div class="dialog-body">{children}</div>
      {footer ? <div class="dialog-footer">{footer}</div> : null}
    </dialog>
  );
}

export interface ConfirmSpec {
  title: string;
  body: ComponentChildren;
  confirmLabel: string;
  /** Red confirm button (cancelling a job, resetting a password, ...). */
  danger?: boolean;
  /** Runs the action; a string return is shown as a success notice. */
  run: () => Promise<string | void>;
}

/** "Are you sure?" with the action's own words on the button; busy while the action runs. */
export function ConfirmDialog({
  spec,
  onClose,
  onDone,
  onError,
}: {
  spec: ConfirmSpec;
  onClose: () => void;
  onDone: (message: string | void) => void;
  onError: (err: unknown) => void;
}) {
  const [busy, setBusy] = useState(false);
  const confirm = async () => {
    setBusy(true);
    try {
      const msg = await spec.run();
      onClose();
      onDone(msg);
    } catch (err) {
      onClose();
      onError(err);
    }
  };
  return (
    <Dialog
      title={spec.title}
      onClose={onClose}
      initialFocus=".dialog-footer .btn-cancel"
      footer={
        <>
          <button type="button" class="btn btn-cancel" onClick={onClose} disabled={busy}>
            Keep as is
          </button>
          <button
            type="button"
            class={spec.danger ? 'btn btn-danger' : 'btn btn-primary'}
            onClick={confirm}
            disabled={busy}
            aria-busy={busy}
          >
            {busy ? 'Working…' : spec.confirmLabel}
          </button>
        </>
      }
    >
      {spec.body}
    </Dialog>
  );
}
