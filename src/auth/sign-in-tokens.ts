import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import type { Account, BlobStore, JobStore } from '../store/types.js';
import { hashToken, safeEqual } from './passwords.js';
import { USER_NAME_RE } from './user-names.js';

/**
 * Per-participant sign-in links (`PUBLIC_URL/login/t/<token>`), the login material printed on
 * login cards instead of a password in a URL.
 *
 * A token is `<user>.<43 base64url chars>` (256 random bits). The store keeps only its sha256, in
 * the blob `signin/<user>`: one record per user, so issuing a new token replaces the old one in a
 * single write on every backend, revoking deletes it, and both travel with backups and state
 * exports like every blob. The user name in the token makes the lookup one key read; the name is
 * printed on the card anyway. A record also names the account it was issued for (its
 * `createdAt`), so removing an account and creating one with the same name leaves old cards dead.
 * Password resets do not touch links (resets end sessions; `revoke` ends a link).
 */
export const SIGN_IN_NS = 'signin';

const TOKEN_RE = /^([a-z0-9][a-z0-9_-]{0,31})\.([A-Za-z0-9_-]{43})$/;

const recordSchema = z.object({
  hash: z.string().regex(/^[0-9a-f]{64}$/),
  /** The account's createdAt when the token was issued. */
  account: z.number(),
  /** When the token was issued, epoch ms. */
  issuedAt: z.number(),
});
type SignInRecord = z.infer<typeof recordSchema>;

export interface IssuedToken {
  user: string;
  token: string;
  issuedAt: number;
}

/** The user a well-formed token names, or null; says nothing about whether it is valid. */
export function tokenUser(token: string): string | null {
  const m = TOKEN_RE.exec(token);
  return m ? m[1]! : null;
}

export class SignInTokens {
  constructor(
    private readonly store: BlobStore & Pick<JobStore, 'getAccount'>,
    private readonly clock: () => number = Date.now,
  ) {}

  /** Makes a new token for an account, replacing (and so revoking) any earlier one. */
  async issue(account: Account): Promise<IssuedToken> {
    if (!USER_NAME_RE.test(account.name)) throw new Error(`not a user name: ${account.name}`);
    const token = `${account.name}.${randomBytes(32).toString('base64url')}`;
    const issuedAt = this.clock();
    const record: SignInRecord = { hash: hashToken(token), account: account.createdAt, issuedAt };
    await this.store.putBlob(SIGN_IN_NS, account.name, JSON.stringify(record));
    return { user: account.name, token, issuedAt };
  }

  /** Ends a user's link; true when there was one. */
  revoke(user: string): Promise<boolean> {
    return this.store.deleteBlob(SIGN_IN_NS, user);
  }

  /** When the account's current link was issued, or null when it has none. */
  async issuedAt(account: Account): Promise<number | null> {
    const record = await this.record(account.name);
    return record && record.account === account.createdAt ? record.issuedAt : null;
  }

  /** Whether `token` is the user's current link (does not check that the account still exists). */
  async isCurrent(token: string): Promise<boolean> {
    const user = tokenUser(token);
    if (!user) return false;
    const record = await this.record(user);
    return record !== null && safeEqual(record.hash, hashToken(token));
  }

  /** The account a current token signs in, or null for an unknown, revoked or stale token. */
  async resolve(token: string): Promise<Account | null> {
    const user = tokenUser(token);
    // Still hash and compare when the format is wrong, so timing says nothing useful.
    const record = user ? await this.record(user) : null;
    const ok = safeEqual(record?.hash ?? '', hashToken(token));
    if (!user || !record || !ok) return null;
    const account = await this.store.getAccount(user);
    if (!account || account.createdAt !== record.account) return null;
    return account;
  }

  /** Users that have a link (possibly stale), sorted. */
  async users(): Promise<string[]> {
    return (await this.store.listBlobs(SIGN_IN_NS)).sort();
  }

  private async record(user: string): Promise<SignInRecord | null> {
    const raw = await this.store.getBlob(SIGN_IN_NS, user);
    if (raw === null) return null;
    try {
      const parsed = recordSchema.safeParse(JSON.parse(raw));
      return parsed.success ? parsed.data : null;
    } catch {
      return null;
    }
  }
}
