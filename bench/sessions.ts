/**
 * Participants with signed sessions for the benchmarks that run the control plane in a child
 * process: the SQLite store in the data dir gets the accounts, and the cookies are minted with the
 * store's own session key, as a login would have made them, so no bcrypt runs while measuring.
 */
import { join } from 'node:path';
import { hashPassword } from '../src/auth/passwords.js';
import { SessionSigner } from '../src/auth/sessions.js';
import { openSqliteStore, type SqliteStore } from '../src/store/sqlite/sqlite-store.js';

export interface ParticipantSessionsOptions {
  /** The store's per-user pending-job limit (a benchmark that enqueues a lot needs it high). */
  maxPendingPerUser: number;
  /** Anything else the benchmark puts in the store, after the accounts (e.g. an env snapshot). */
  setup?: (store: SqliteStore) => Promise<void>;
}

/**
 * Opens the SQLite store at `<dir>/comfy-multi.db`, puts one participant account per name (one
 * bcrypt hash shared by all, valid for an hour) and returns their signed session tokens (the
 * cookie's value, without the `name=` part), in the order of `users`. The store is closed again.
 */
export async function participantSessions(
  dir: string,
  users: readonly string[],
  opts: ParticipantSessionsOptions,
): Promise<string[]> {
  const store = await openSqliteStore({
    path: join(dir, 'comfy-multi.db'),
    defaults: {
      mode: 'round_robin',
      paused: false,
      limits: { maxPendingPerUser: opts.maxPendingPerUser, maxRunningPerUser: 1 },
      userLimits: {},
    },
  });
  try {
    const passwordHash = await hashPassword('bench-password-0123456789');
    const createdAt = Date.now();
    for (const name of users)
      await store.putAccount({ name, role: 'participant', passwordHash, createdAt, passwordVersion: 1 });
    await opts.setup?.(store);
    const signer = await SessionSigner.open(store);
    const e = Math.floor(Date.now() / 1000) + 3600;
    return users.map((u) => signer.sign({ u, v: 1, e, s: SessionSigner.newId(), c: createdAt }));
  } finally {
    await store.close();
  }
}

/** {@link participantSessions} for one participant: their signed session token. */
export async function participantSession(
  dir: string,
  user: string,
  opts: ParticipantSessionsOptions,
): Promise<string> {
  const [token] = await participantSessions(dir, [user], opts);
  return token as string;
}
