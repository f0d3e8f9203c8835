import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { toAppError } from '../http/error-handler.js';
import type { BlobStore } from '../store/types.js';
import type { AuditAction, AuditEntry } from './view-types.js';

/** Blob namespace of the audit log: one blob per entry, keyed so that key order is time order. */
export const AUDIT_NS = 'audit';
/** How many entries are kept in the store; older ones are deleted. */
const KEEP = 5000;
/** How many recent entries are kept in memory for the dashboard. */
const RECENT = 200;

export type NewAuditEntry = Omit<AuditEntry, 'id' | 'at'>;

let counter = 0;

/**
 * `<15-digit epoch ms>-<6-digit counter>-<8 hex>`: sorts by time (code point order), in recording
 * order within this process even within one millisecond, and unique across processes.
 */
function keyFor(at: number): string {
  counter = (counter + 1) % 1_000_000;
  return `${String(at).padStart(15, '0')}-${String(counter).padStart(6, '0')}-${randomBytes(4).toString('hex')}`;
}

function parseEntry(raw: string | null): AuditEntry | null {
  if (!raw) return null;
  try {
    const e = JSON.parse(raw) as AuditEntry;
    return typeof e.id === 'string' && typeof e.at === 'number' && typeof e.action === 'string' ? e : null;
  } catch {
    return null;
  }
}

/**
 * Who did what, when: every instructor action taken from the dashboard, persisted through the
 * store's blob API (namespace `audit`) so it survives restarts and is shared by every process on
 * the same store. `entry` fires after each record, and for entries another process recorded
 * (`origin` `remote`, passed in by src/cluster/live-sync.ts) so every dashboard shows them live.
 */
export class AuditLog extends EventEmitter<{ entry: [entry: AuditEntry, origin: 'local' | 'remote'] }> {
  private recentEntries: AuditEntry[] = [];
  private loaded: Promise<void> | null = null;
  private appended = 0;

  constructor(
    private readonly store: BlobStore,
    private readonly clock: () => number = Date.now,
  ) {
    super();
    this.setMaxListeners(0);
  }

  /** Reads the most recent entries from the store once. */
  load(): Promise<void> {
    this.loaded ??= (async () => {
      const keys = await this.store.listBlobs(AUDIT_NS);
      const last = keys.slice(-RECENT);
      const entries = await Promise.all(
        last.map(async (k) => parseEntry(await this.store.getBlob(AUDIT_NS, k))),
      );
      const fromStore = entries.filter((e): e is AuditEntry => e !== null);
      // Entries recorded while loading are kept too.
      const seen = new Set(fromStore.map((e) => e.id));
      this.recentEntries = [...fromStore, ...this.recentEntries.filter((e) => !seen.has(e.id))].slice(
        -RECENT,
      );
    })();
    return this.loaded;
  }

  async record(input: NewAuditEntry): Promise<AuditEntry> {
    const at = this.clock();
    const id = keyFor(at);
    const entry: AuditEntry = { id, at, ...input };
    await this.store.putBlob(AUDIT_NS, id, JSON.stringify(entry));
    this.remember(entry);
    this.emit('entry', entry, 'local');
    if (++this.appended % 100 === 0) void this.prune().catch(() => {});
    return entry;
  }

  /** An entry another process recorded (already in the shared store): shown here too. */
  receive(entry: AuditEntry): void {
    if (this.recentEntries.some((e) => e.id === entry.id)) return;
    this.remember(entry);
    this.emit('entry', entry, 'remote');
  }

  /** Reads the recent entries from the store again (after missing other processes' messages). */
  async reload(): Promise<void> {
    this.loaded = null;
    await this.load();
    const last = this.recentEntries.at(-1);
    if (last) this.emit('entry', last, 'remote');
  }

  private remember(entry: AuditEntry): void {
    const list = this.recentEntries;
    // Keys sort by time; an entry from another process may be older than our newest.
    let i = list.length;
    while (i > 0 && list[i - 1]!.id > entry.id) i--;
    list.splice(i, 0, entry);
    if (list.length > RECENT) list.splice(0, list.length - RECENT);
  }

  /**
   * Runs one instructor action and records it either way: `ok` with the details `fn` filled in, or
   * the error code it failed with (then the error is rethrown). Every state-changing call of the
   * dashboard and of `/api/v1` goes through here, so the activity log misses none.
   */
  async audited<T>(
    by: string,
    action: AuditAction,
    target: string | null,
    fn: (details: Record<string, unknown>) => Promise<T>,
    details: Record<string, unknown> = {},
  ): Promise<T> {
    let result: T;
    try {
      result = await fn(details);
    } catch (err) {
      // A failed write of the log must not hide the action's own error.
      await this.record({ by, action, target, details, ok: false, error: toAppError(err).code }).catch(
        () => {},
      );
      throw err;
    }
    await this.record({ by, action, target, details, ok: true });
    return result;
  }

  /** The most recent entries, newest first. */
  async recent(limit = 100): Promise<AuditEntry[]> {
    await this.load();
    return this.recentEntries.slice(-limit).reverse();
  }

  /** Deletes the oldest entries beyond the last {@link KEEP}. */
  async prune(): Promise<number> {
    const keys = await this.store.listBlobs(AUDIT_NS);
    const old = keys.slice(0, Math.max(0, keys.length - KEEP));
    for (const k of old) await this.store.deleteBlob(AUDIT_NS, k);
    return old.length;
  }
}

export type { AuditAction, AuditEntry };
