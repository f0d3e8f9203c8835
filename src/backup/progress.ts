/**
 * Progress of a backup or restore: a bar redrawn in place on a terminal, plain lines in logs (at
 * most one every few seconds, or every 10 %), and the same events for the server's logger.
 */
export interface Progress {
  /** A phase begins: `state`, `files`, `retention`, ... */
  phase(name: string): void;
  /** Work to do in the current phase, in bytes (may grow as more work is discovered). */
  addTotal(bytes: number, files?: number): void;
  /** Bytes done. */
  advance(bytes: number): void;
  fileDone(): void;
  /** A line worth keeping (e.g. a large upload starting). */
  note(line: string): void;
  /** Ends the bar (call once). */
  finish(): void;
}

export const silentProgress: Progress = {
  phase() {},
  addTotal() {},
  advance() {},
  fileDone() {},
  note() {},
  finish() {},
};

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KB', 'MB', 'GB', 'TB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v >= 100 ? v.toFixed(0) : v.toFixed(1)} ${units[i]}`;
}

export interface ProgressOptions {
  /** `backup` / `restore`: the prefix of every line. */
  label: string;
  /** Where to write (stderr in the CLI). */
  write: (s: string) => void;
  /** Redraw a bar in place (a TTY) instead of printing lines. */
  tty: boolean;
  /** Columns of the terminal. Default 80. */
  columns?: number;
  /** Minimum time between plain lines. Default 5000 ms. */
  lineIntervalMs?: number;
  now?: () => number;
}

export function createProgress(o: ProgressOptions): Progress {
  const now = o.now ?? Date.now;
  let phase = '';
  let total = 0;
  let done = 0;
  let files = 0;
  let filesDone = 0;
  let started = now();
  let lastDraw = 0;
  let lastLine = 0;
  let lastPct = -1;
  let drawn = false;

  const rate = () => {
    const s = (now() - started) / 1000;
    return s > 0.5 ? done / s : 0;
  };
  const pct = () => (total > 0 ? Math.min(100, Math.floor((done / total) * 100)) : 0);
  const status = () =>
    `${formatBytes(done)} of ${formatBytes(total)}${files ? `, ${filesDone}/${files} files` : ''}${
      rate() > 0 ? `, ${formatBytes(rate())}/s` : ''
    }`;

  const clear = () => {
    if (o.tty && drawn) {
      o.write('\r\x1b[2K');
      drawn = false;
    }
  };
  const draw = (force = false) => {
    const t = now();
    if (o.tty) {
      if (!force && t - lastDraw < 100) return;
      lastDraw = t;
      const width = Math.max(10, Math.min(30, (o.columns ?? 80) - 70));
      const filled = Math.round((pct() / 100) * width);
      const bar = `${'█'.repeat(filled)}${'░'.repeat(width - filled)}`;
      const line = `${o.label} ${phase} [${bar}] ${String(pct()).padStart(3)}% ${status()}`;
      o.write(`\r\x1b[2K${line.slice(0, (o.columns ?? 80) - 1)}`);
      drawn = true;
      return;
    }
    const p = pct();
    const since = t - lastLine;
    const stepped = Math.floor(p / 10) > Math.floor(lastPct / 10);
    if (total === 0 || p === lastPct) return;
    if (force || since >= (o.lineIntervalMs ?? 5000) || (stepped && since >= 1000)) {
      lastLine = t;
      lastPct = p;
      o.write(`${o.label}: ${phase} ${p}% (${status()})\n`);
    }
  };

  return {
    phase(name) {
      if (phase && total > 0) draw(true);
      clear();
      phase = name;
      total = 0;
      done = 0;
      files = 0;
      filesDone = 0;
      started = now();
      lastPct = -1;
      lastLine = now();
      if (!o.tty) o.write(`${o.label}: ${name}\n`);
    },
    addTotal(bytes, n = 0) {
      total += bytes;
      files += n;
      draw();
    },
    advance(bytes) {
      done += bytes;
      draw();
    },
    fileDone() {
      filesDone++;
      draw();
    },
    note(line) {
      clear();
      o.write(`${o.label}: ${line}\n`);
      if (o.tty) draw(true);
    },
    finish() {
      if (total > 0) draw(true);
      if (o.tty && drawn) {
        o.write('\n');
        drawn = false;
      }
    },
  };
}
