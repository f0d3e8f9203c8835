/** Accounts, worker tokens, blobs and the settings row: small keyed tables. */
import type Database from 'better-sqlite3';
import type { Account, QueueLimits, QueueSettings, Role, WorkerToken } from '../types.js';

interface AccountRow {
  name: string;
  role: Role;
  password_hash: string;
  created_at: number;
  password_version: number;
}

interface TokenRow {
  name: string;
  token_hash: string;
  created_at: number;
  revoked_at: number | null;
}

const toAccount = (r: AccountRow): Account => ({
  name: r.name,
  role: r.role,
  passwordHash: r.password_hash,
  createdAt: r.created_at,
  passwordVersion: r.password_version,
});

const toToken = (r: TokenRow): WorkerToken => ({
  name: r.name,
  tokenHash: r.token_hash,
  createdAt: r.created_at,
  revokedAt: r.revoked_at,
});

export type SettingsPatch = Partial<Omit<QueueSettings, 'limits'>> & { limits?: Partial<QueueLimits> };

export function mergeSettings(cur: QueueSettings, patch: SettingsPatch): QueueSettings {
  const limits = { ...cur.limits };
  for (const k of ['maxPendingPerUser', 'maxRunningPerUser'] as const) {
    const v = patch.limits?.[k];
    if (v !== undefined) limits[k] = v;
  }
  return {
    mode: patch.mode ?? cur.mode,
    paused: patch.paused ?? cur.paused,
    limits,
    userLimits: structuredClone(patch.userLimits ?? cur.userLimits),
  };
}

/** The settings JSON in `meta`, parsed once per distinct value. */
export class SettingsRow {
  private readonly read: Database.Statement<[], string | null>;
  private readonly write: Database.Statement<[string], unknown>;
  private lastText: string | null = null;
  private lastParsed: QueueSettings | null = null;

  constructor(
    db: Database.Database,
    private readonly defaults: QueueSettings,
  ) {
    this.read = db.prepare<[], string | null>('SELECT settings FROM meta WHERE id = 1').pluck();
    this.write = db.prepare<[string], unknown>('UPDATE meta SET settings = ? WHERE id = 1');
  }

  /** Current settings; the result is shared, callers must not mutate it. */
  get(): QueueSettings {
    const text = this.read.get() ?? null;
    if (text === null) return this.defaults;
    if (text !== this.lastText || !this.lastParsed) {
      this.lastParsed = mergeSettings(this.defaults, JSON.parse(text) as SettingsPatch);
      this.lastText = text;
    }
    return this.lastParsed;
  }

  put(s: QueueSettings): void {
    this.write.run(JSON.stringify(s));
  }
}

export class Accounts {
  private readonly getStmt: Database.Statement<[string], AccountRow>;
  private readonly listStmt: Database.Statement<[], AccountRow>;
  private readonly putStmt: Database.Statement<[AccountRow], unknown>;
  private readonly delStmt: Database.Statement<[string], unknown>;
  private readonly putTokenStmt: Database.Statement<[TokenRow], unknown>;
  private readonly listTokensStmt: Database.Statement<[], TokenRow>;
  private readonly revokeStmt: Database.Statement<[number, string], unknown>;
  private readonly tokenExistsStmt: Database.Statement<[string], number>;

  constructor(db: Database.Database) {
    const cols = 'name, role, password_hash, created_at, password_version';
    this.getStmt = db.prepare<[string], AccountRow>(`SELECT ${cols} FROM accounts WHERE name = ?`);
    this.listStmt = db.prepare<[], AccountRow>(`SELECT ${cols} FROM accounts ORDER BY name`);
    this.putStmt = db.prepare<[AccountRow], unknown>(
      `INSERT OR REPLACE INTO accounts (${cols}) VALUES (@name, @role, @password_hash, @created_at, @password_version)`,
    );
    this.delStmt = db.prepare<[string], unknown>('DELETE FROM accounts WHERE name = ?');
    this.putTokenStmt = db.prepare<[TokenRow], unknown>(
      `INSERT OR REPLACE INTO worker_tokens (name, token_hash, created_at, revoked_at)
       VALUES (@name, @token_hash, @created_at, @revoked_at)`,
    );
    this.listTokensStmt = db.prepare<[], TokenRow>(
      'SELECT name, token_hash, created_at, revoked_at FROM worker_tokens ORDER BY name',
    );
    this.revokeStmt = db.prepare<[number, string], unknown>(
      'UPDATE worker_tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL',
    );
    this.tokenExistsStmt = db.prepare<[string], number>('SELECT 1 FROM worker_tokens WHERE name = ?').pluck();
  }

  get(name: string): Account | null {
    const r = this.getStmt.get(name);
    return r ? toAccount(r) : null;
  }

  list(): Account[] {
    return this.listStmt.all().map(toAccount);
  }

  put(a: Account): void {
    this.putStmt.run({
      name: a.name,
      role: a.role,
      password_hash: a.passwordHash,
      created_at: a.createdAt,
      password_version: a.passwordVersion,
    });
  }

  delete(name: string): boolean {
    return this.delStmt.run(name).changes > 0;
  }

  putToken(t: WorkerToken): void {
    this.putTokenStmt.run({
      name: t.name,
      token_hash: t.tokenHash,
      created_at: t.createdAt,
      revoked_at: t.revokedAt,
    });
  }

  listTokens(): WorkerToken[] {
    return this.listTokensStmt.all().map(toToken);
  }

  /** True when the token exists; an already revoked token keeps its first `revokedAt`. */
  revokeToken(name: string, now: number): boolean {
    this.revokeStmt.run(now, name);
    return this.tokenExistsStmt.get(name) !== undefined;
  }
}

export class Blobs {
  private readonly getStmt: Database.Statement<[string, string], string>;
  private readonly putStmt: Database.Statement<[string, string, string], unknown>;
  private readonly delStmt: Database.Statement<[string, string], unknown>;
  private readonly listStmt: Database.Statement<[string], string>;
  private readonly listPrefixStmt: Database.Statement<[string, string, string, number, string], string>;

  constructor(db: Database.Database) {
    this.getStmt = db
      .prepare<[string, string], string>('SELECT value FROM blobs WHERE ns = ? AND key = ?')
      .pluck();
    this.putStmt = db.prepare<[string, string, string], unknown>(
      'INSERT INTO blobs (ns, key, value) VALUES (?, ?, ?) ON CONFLICT (ns, key) DO UPDATE SET value = excluded.value',
    );
    this.delStmt = db.prepare<[string, string], unknown>('DELETE FROM blobs WHERE ns = ? AND key = ?');
    this.listStmt = db.prepare<[string], string>('SELECT key FROM blobs WHERE ns = ? ORDER BY key').pluck();
    // The range keeps the primary key usable (no valid UTF-8 text sorts above prefix || F4 90 80 80);
    // substr() makes the prefix test exact, without LIKE wildcards.
    this.listPrefixStmt = db
      .prepare<[string, string, string, number, string], string>(
        `SELECT key FROM blobs WHERE ns = ? AND key >= ? AND key < (? || CAST(x'F4908080' AS TEXT))
         AND substr(key, 1, ?) = ? ORDER BY key`,
      )
      .pluck();
  }

  get(ns: string, key: string): string | null {
    return this.getStmt.get(ns, key) ?? null;
  }

  put(ns: string, key: string, value: string): void {
    this.putStmt.run(ns, key, value);
  }

  delete(ns: string, key: string): boolean {
    return this.delStmt.run(ns, key).changes > 0;
  }

  list(ns: string, prefix?: string): string[] {
    if (!prefix) return this.listStmt.all(ns);
    return this.listPrefixStmt.all(ns, prefix, prefix, [...prefix].length, prefix);
  }
}
