import type { LiveSections } from '../../view-types.js';
import type { ConfirmSpec } from './dialog.js';

/** What every section gets from the app: the state, the time, and ways to act. */
export interface Ctx {
  s: LiveSections;
  /** Now, on the server's clock (ms). */
  now: number;
  /** Asks for confirmation, then runs the action. */
  confirm(spec: ConfirmSpec): void;
  /** Opens one of the form dialogs. */
  open(d: FormDialog): void;
  notify(message: string, kind?: 'ok' | 'error'): void;
  /** The server's URL as the browser sees it, for commands shown in empty states. */
  origin: string;
}

export type FormDialog =
  | { kind: 'priority'; jobId: string; number: number; user: string; priority: string }
  | { kind: 'user-limits'; user: string }
  | { kind: 'user-priority'; user: string }
  | { kind: 'queue-limits' }
  | { kind: 'broadcast' }
  | { kind: 'password'; user: string; password: string };
