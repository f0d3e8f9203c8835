import type { Account, JobStore, Role } from '../store/types.js';
import { AppError } from '../errors.js';
import {
  directHasher,
  generatePassword,
  hashPassword,
  verifyPassword,
  type PasswordHasher,
} from './passwords.js';
import { isValidAccountName } from './user-names.js';

export interface CreatedAccount {
  account: Account;
  /** The plain password, to show once. */
  password: string;
}

/** Accounts: creation, passwords, verification. Reads the store each time so CLI changes apply live. */
export class AccountService {
  constructor(
    private readonly store: JobStore,
    private readonly clock: () => number = Date.now,
    private readonly hasher: PasswordHasher = directHasher,
  ) {}

  async create(name: string, role: Role, password?: string): Promise<CreatedAccount> {
    if (!isValidAccountName(name)) {
      throw new AppError(
        'VALIDATION_FAILED',
        `"${name}" is not a valid user name: use 1–32 of a-z 0-9 _ - (not a reserved word).`,
      );
    }
    if (await this.store.getAccount(name)) throw new AppError('USER_EXISTS', `User ${name} already exists.`);
    const plain = password ?? generatePassword();
    const account: Account = {
      name,
      role,
      passwordHash: await hashPassword(plain, this.hasher),
      createdAt: this.clock(),
      passwordVersion: 1,
    };
    await this.store.putAccount(account);
    return { account, password: plain };
  }

  async resetPassword(name: string, password?: string): Promise<CreatedAccount> {
    const existing = await this.store.getAccount(name);
    if (!existing) throw new AppError('USER_NOT_FOUND', `No user named ${name}.`);
    const plain = password ?? generatePassword();
    const account = {
      ...existing,
      passwordHash: await hashPassword(plain, this.hasher),
      passwordVersion: existing.passwordVersion + 1,
    };
    await this.store.putAccount(account);
    return { account, password: plain };
  }

  async remove(name: string): Promise<boolean> {
    return this.store.deleteAccount(name);
  }

  get(name: string): Promise<Account | null> {
    return this.store.getAccount(name);
  }

  list(): Promise<Account[]> {
    return this.store.listAccounts();
  }

  /**
   * The account when name and password match; null otherwise, in the same time whether or not the
   * account exists (an unknown name is checked against a dummy hash). A name that is not a valid
   * account name at all costs no bcrypt: that it cannot exist is public, so the time reveals nothing.
   */
  async verify(name: string, password: string): Promise<Account | null> {
    if (!isValidAccountName(name)) return null;
    const account = await this.store.getAccount(name);
    const ok = await verifyPassword(password, account?.passwordHash ?? null, this.hasher);
    return ok ? account : null;
  }
}
