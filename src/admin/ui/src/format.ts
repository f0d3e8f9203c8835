/** Formatting for people: durations, local times, sizes. */

const pad = (n: number) => String(n).padStart(2, '0');

/** `45 s`, `3 min 05 s`, `1 h 12 min`. */
export function duration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return '—';
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${pad(s % 60)} s`;
  const h = Math.floor(m / 60);
  return `${h} h ${pad(m % 60)} min`;
}

/** Short form for tables: `45s`, `3m05s`, `1h12m`. */
export function shortDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return '—';
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${pad(s % 60)}s`;
  return `${Math.floor(m / 60)}h${pad(m % 60)}m`;
}

/** Local wall-clock time, `14:05:09`. */
export function clock(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) return '—';
  return new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

/** Local date and time, for tooltips. */
export function fullTime(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) return '';
  return new Date(ms).toLocaleString([], { dateStyle: 'medium', timeStyle: 'medium' });
}

/** `just now`, `12 s ago`, `5 min ago`, or the local time when longer ago. */
export function ago(ms: number | null | undefined, now: number): string {
  if (ms === null || ms === undefined) return 'never';
  const s = Math.round((now - ms) / 1000);
  if (s < 3) return 'just now';
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  return `at ${clock(ms)}`;
}

export function gigabytes(bytes: number): string {
  return `${(bytes / 1024 ** 3).toFixed(1)} GB`;
}

/** The last part of a model path: `checkpoints/flux/x.safetensors` → `x.safetensors`. */
export function modelName(path: string): string {
  const i = path.lastIndexOf('/');
  return i < 0 ? path : path.slice(i + 1);
}

export const MODE_LABEL: Record<string, string> = {
  fifo: 'First come, first served',
  round_robin: 'Fair share',
  priority: 'Priority',
};

export const MODE_HELP: Record<string, string> = {
  fifo: 'Jobs run strictly in the order they were queued.',
  round_robin: 'Participants take turns: one job each, so nobody floods the queue.',
  priority: 'Higher priority first (instructor, high, normal, low), fair share within a level.',
};
