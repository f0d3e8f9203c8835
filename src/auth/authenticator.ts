import type { FastifyRequest } from 'fastify';
import type { Account, Role } from '../store/types.js';
import { AppError } from '../errors.js';
import type { AccountService } from './account-service.js';
import { addressKey, type LoginAttempt, type LoginLimiter } from './login-throttle.js';
import { hashToken, safeEqual } from './passwords.js';
import type { SessionRevocations } from './session-revocations.js';
import { SESSION_COOKIE, SessionSigner } from './sessions.js';
import { isValidAccountName } from './user-names.js';

export interface Principal {
  name: string;
  role: Role;
  via: 'basic' | 'token' | 'session';
  /** The account's passwordVersion, to mint a session after a Basic login. */
  passwordVersion?: number;
  /** The account's createdAt, to mint a session. */
  createdAt?: number;
}

/** A good Basic login is remembered this long, so API clients don't pay bcrypt on every request. */
const BASIC_CACHE_MS = 5 * 60_000;
const BASIC_CACHE_MAX = 10_000;

export interface BasicCredentials {
  name: string;
  password: string;
}

export function parseBasic(header: string | undefined): BasicCredentials | null {
  if (!header || !/^basic /i.test(header)) return null;
  const decoded = Buffer.from(header.slice(6).trim(), 'base64').toString('utf8');
  const i = decoded.indexOf(':');
  if (i < 0) return null;
  return { name: decoded.slice(0, i), password: decoded.slice(i + 1) };
}

export function parseBearer(header: string | undefined): string | null {
  if (!header || !/^bearer /i.test(header)) return null;
  const token = header.slice(7).trim();
  return token.length > 0 ? token : null;
}

/**
 * Works out who is calling: a Bearer API token (instructor rights), HTTP Basic against the
 * accounts, or a session cookie. Password checks are throttled (`LoginLimiter`) before any bcrypt
 * work, and the bcrypt work itself is bounded by the accounts' hasher (`BcryptPool`).
 */
export class Authenticator {
  private readonly apiTokenHashes: { name: string; hash: string }[];
  private readonly basicCache = new Map<string, { name: string; version: number; until: number }>();

  constructor(
    private readonly accounts: AccountService,
    private readonly throttle: LoginLimiter,
    apiTokens: { name: string; secret: string }[],
    readonly sessions: SessionSigner,
    private readonly revocations: SessionRevocations,
  ) {
    this.apiTokenHashes = apiTokens.map((t) => ({ name: t.name, hash: hashToken(t.secret) }));
  }

  /** The caller, null when no credentials were sent; throws on wrong or throttled credentials. */
  async identify(request: FastifyRequest): Promise<Principal | null> {
    const header = request.headers.authorization;
    const bearer = parseBearer(header);
    if (bearer) return this.fromApiToken(bearer);
    const basic = parseBasic(header);
    if (basic) return this.login(basic, request.ip);
    const cookie = request.cookies?.[SESSION_COOKIE];
    return cookie ? this.fromSession(cookie) : null;
  }

  /**
   * Checks a name and password. The throttle decides first (no bcrypt for a refused attempt);
   * throws INVALID_CREDENTIALS, LOGIN_THROTTLED (429) or LOGIN_BUSY (503).
   */
  async login(creds: BasicCredentials, ip: string, deviceToken?: string): Promise<Principal> {
    const lower = creds.name.toLowerCase();
    // Names that cannot exist share one key, so random names cannot grow the throttle's memory.
    const attempt: LoginAttempt = {
      address: addressKey(ip),
      account: isValidAccountName(lower) ? lower : '~invalid',
    };
    const device = deviceToken ? this.sessions.verifyDevice(deviceToken) : null;
    if (device && device.u === lower) attempt.device = device.d;
    const cached = await this.fromBasicCache(creds);
    if (cached) {
      // Known-good credentials guess nothing; they only reset this person's count.
      await this.throttle.succeeded(attempt);
      return cached;
    }
    const admission = await this.throttle.admit(attempt);
    if (!admission.ok) {
      throw new AppError('LOGIN_THROTTLED', undefined, { retryAfter: admission.retryAfter });
    }
    const { permit } = admission;
    let found;
    try {
      found = await this.accounts.verify(creds.name, creds.password);
    } catch (err) {
      if (err instanceof AppError && err.code === 'LOGIN_BUSY') await permit.busy();
      else await permit.release();
      throw err;
    }
    if (!found) {
      await permit.fail();
      throw new AppError('INVALID_CREDENTIALS');
    }
    await permit.succeed();
    if (this.basicCache.size >= BASIC_CACHE_MAX) this.basicCache.clear();
    this.basicCache.set(basicCacheKey(creds), {
      name: found.name,
      version: found.passwordVersion,
      until: Date.now() + BASIC_CACHE_MS,
    });
    return principalOf(found, 'basic');
  }

  /** A session token for a freshly signed-in principal, valid for `ttlSeconds`. */
  mintSession(p: Principal, ttlSeconds: number): string {
    return this.sessions.sign({
      u: p.name,
      v: p.passwordVersion ?? 0,
      e: Math.floor(Date.now() / 1000) + ttlSeconds,
      s: SessionSigner.newId(),
      c: p.createdAt ?? 0,
    });
  }

  /**
   * A device cookie for a browser that just signed in as `p` (see `DeviceClaims`); keeps the
   * browser's device id when its cookie was already for this account.
   */
  mintDevice(p: Principal, previous: string | undefined, ttlSeconds: number): string {
    const old = previous ? this.sessions.verifyDevice(previous) : null;
    return this.sessions.signDevice({
      u: p.name,
      d: old && old.u === p.name ? old.d : SessionSigner.newId(),
      e: Math.floor(Date.now() / 1000) + ttlSeconds,
    });
  }

  /** Ends one session server-side (logout): its cookie is refused from now on, everywhere. */
  async endSession(token: string | undefined): Promise<boolean> {
    const claims = token ? this.sessions.verify(token) : null;
    if (!claims) return false;
    await this.revocations.revoke(claims);
    return true;
  }

  /** Whether a session token still signs its holder in (not logged out, reset or removed). */
  async sessionValid(token: string): Promise<boolean> {
    return (await this.fromSession(token)) !== null;
  }

  private async fromSession(token: string): Promise<Principal | null> {
    const claims = this.sessions.verify(token);
    if (!claims) return null;
    // Re-read the account on every request: removal (even if re-created under the same name), a
    // password reset, or a logout of this session takes effect at once.
    const [account, revoked] = await Promise.all([
      this.accounts.get(claims.u),
      this.revocations.isRevoked(claims),
    ]);
    if (!account || revoked) return null;
    if (account.passwordVersion !== claims.v || account.createdAt !== claims.c) return null;
    return principalOf(account, 'session');
  }

  private async fromBasicCache(creds: BasicCredentials): Promise<Principal | null> {
    const key = basicCacheKey(creds);
    const hit = this.basicCache.get(key);
    if (!hit) return null;
    const account = await this.accounts.get(hit.name);
    if (hit.until < Date.now() || !account || account.passwordVersion !== hit.version) {
      this.basicCache.delete(key);
      return null;
    }
    return principalOf(account, 'basic');
  }

  private fromApiToken(token: string): Principal {
    const hash = hashToken(token);
    // Compare against every entry so timing does not reveal which one matched.
    let match: string | null = null;
    for (const t of this.apiTokenHashes) if (safeEqual(t.hash, hash)) match = t.name;
    if (!match) throw new AppError('INVALID_TOKEN');
    return { name: `token:${match}`, role: 'instructor', via: 'token' };
  }
}

/** The principal an account signs in as (sessions carry its password version and creation time). */
export function principalOf(a: Account, via: 'basic' | 'session'): Principal {
  return { name: a.name, role: a.role, via, passwordVersion: a.passwordVersion, createdAt: a.createdAt };
}

/** Keyed by a hash so the cache never holds a plain password. */
function basicCacheKey(c: BasicCredentials): string {
  return hashToken(`${c.name}\u0000${c.password}`);
}
