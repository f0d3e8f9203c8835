/**
 * The small records of the Redis store: accounts (hash `accounts`, JSON per name), worker tokens
 * (hash `wtokens`, revocation times in `wtokens:revoked`) and blobs (hash `blob:<ns>` per
 * namespace). The key layout is documented in keys.ts.
 */
import type { Account, WorkerToken } from '../types.js';
import { byCodePoint, own } from './redis-rows.js';
import type { RedisStoreCore } from './store-core.js';

export class RedisRecords {
  constructor(private readonly core: RedisStoreCore) {}

  async getAccount(name: string): Promise<Account | null> {
    const v = await this.core.io(this.core.client.hget(this.core.keys.accounts, name));
    return v === null ? null : (JSON.parse(v) as Account);
  }

  async listAccounts(): Promise<Account[]> {
    const values = await this.core.io(this.core.client.hvals(this.core.keys.accounts));
    return values.map((v) => JSON.parse(v) as Account).sort((a, b) => byCodePoint(a.name, b.name));
  }

  async putAccount(account: Account): Promise<void> {
    const a: Account = {
      name: account.name,
      role: account.role,
      passwordHash: account.passwordHash,
      createdAt: account.createdAt,
      passwordVersion: account.passwordVersion,
    };
    await this.core.io(this.core.client.hset(this.core.keys.accounts, account.name, JSON.stringify(a)));
  }

  async deleteAccount(name: string): Promise<boolean> {
    return (await this.core.io(this.core.client.hdel(this.core.keys.accounts, name))) > 0;
  }

  async putWorkerToken(token: WorkerToken): Promise<void> {
    const k = this.core.keys;
    const multi = this.core.client
      .multi()
      .hset(
        k.workerTokens,
        token.name,
        JSON.stringify({ name: token.name, tokenHash: token.tokenHash, createdAt: token.createdAt }),
      );
    if (token.revokedAt === null) multi.hdel(k.workerTokensRevoked, token.name);
    else multi.hset(k.workerTokensRevoked, token.name, String(token.revokedAt));
    const res = await this.core.io(multi.exec());
    for (const [err] of res ?? []) if (err) this.core.raise(err);
  }

  async listWorkerTokens(): Promise<WorkerToken[]> {
    const k = this.core.keys;
    const res =
      (await this.core.io(
        this.core.client.multi().hgetall(k.workerTokens).hgetall(k.workerTokensRevoked).exec(),
      )) ?? [];
    for (const [err] of res) if (err) this.core.raise(err);
    const tokens = (res[0]?.[1] ?? {}) as Record<string, string>;
    const revoked = (res[1]?.[1] ?? {}) as Record<string, string>;
    return Object.entries(tokens)
      .map(([name, json]): WorkerToken => {
        const t = JSON.parse(json) as Omit<WorkerToken, 'revokedAt'>;
        const r = own(revoked, name);
        return {
          name: t.name,
          tokenHash: t.tokenHash,
          createdAt: t.createdAt,
          revokedAt: r === undefined ? null : Number(r),
        };
      })
      .sort((a, b) => byCodePoint(a.name, b.name));
  }

  async revokeWorkerToken(name: string, now: number): Promise<boolean> {
    const k = this.core.keys;
    const r = (await this.core.run(
      'revoke-token',
      [k.workerTokens, k.workerTokensRevoked],
      [name, now],
    )) as unknown;
    return r === 1;
  }

  async getBlob(ns: string, key: string): Promise<string | null> {
    return this.core.io(this.core.client.hget(this.core.keys.blob(ns), key));
  }

  async putBlob(ns: string, key: string, value: string): Promise<void> {
    await this.core.io(this.core.client.hset(this.core.keys.blob(ns), key, value));
  }

  async deleteBlob(ns: string, key: string): Promise<boolean> {
    return (await this.core.io(this.core.client.hdel(this.core.keys.blob(ns), key))) > 0;
  }

  async listBlobs(ns: string, prefix?: string): Promise<string[]> {
    const keys = await this.core.io(this.core.client.hkeys(this.core.keys.blob(ns)));
    return (prefix ? keys.filter((k) => k.startsWith(prefix)) : keys).sort(byCodePoint);
  }
}
