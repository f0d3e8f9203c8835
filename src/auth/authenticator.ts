import type { FastifyRequest } from 'fastify';
import type { Role } from '../store/types.js';
import { AppError } from '../errors.js';
import type { AccountService } from './account-service.js';
import type { LoginThrottle } from './login-throttle.js';
import { hashToken, safeEqual } from './passwords.js';
import { SESSION_COOKIE, type SessionSigner } from './sessions.js';

export interface Principal {
  name: string;
  role: Role;
  via: 'basic' | 'token' | 'session';
  /** The account's passwordVersion, to mint a session after a Basic login. */
  passwordVersion?: number;
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
 * accounts, or a session cookie. Failed logins are throttled per IP and per name.
 */
export class Authenticator {
  private readonly apiTokenHashes: { name: string; hash: string }[];
  private readonly basicCache = new Map<string, { name: string; version: number; until: number }>();

  constructor(
    private readonly accounts: AccountService,
    private readonly throttle: LoginThrottle,
    apiTokens: { name: string; secret: string }[],
    readonly sessions: SessionSigner,
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

  /** Checks a name and password with throttling; throws INVALID_CREDENTIALS or LOGIN_THROTTLED. */
  async login(creds: BasicCredentials, ip: string): Promise<Principal> {
    const cached = await this.fromBasicCache(creds);
    if (cached) return cached;
    const keys = [`ip:${ip}`, `user:${creds.name.toLowerCase()}`];
    const wait = this.throttle.retryAfter(keys);
    if (wait > 0) throw new AppError('LOGIN_THROTTLED', undefined, { retryAfter: wait });
    const account = await this.accounts.verify(creds.name, creds.password);
    if (!account) {
      this.throttle.fail(keys);
      throw new AppError('INVALID_CREDENTIALS');
    }
    this.throttle.succeed([`user:${creds.name.toLowerCase()}`]);
    if (this.basicCache.size >= BASIC_CACHE_MAX) this.basicCache.clear();
    this.basicCache.set(basicCacheKey(creds), {
      name: account.name,
      version: account.passwordVersion,
      until: Date.now() + BASIC_CACHE_MS,
    });
    return { name: account.name, role: account.role, via: 'basic', passwordVersion: account.passwordVersion };
  }

  /** A session token for a freshly signed-in principal, valid for `ttlSeconds`. */
  mintSession(p: Principal, ttlSeconds: number): string {
    return this.sessions.sign({
      u: p.name,
      v: p.passwordVersion ?? 0,
      e: Math.floor(Date.now() / 1000) + ttlSeconds,
    });
  }

  private async fromSession(token: string): Promise<Principal | null> {
    const claims = this.sessions.verify(token);
    if (!claims) return null;
    // Re-read the account: removal, role change or a password reset takes effect at once.
    const account = await this.accounts.get(claims.u);
    if (!account || account.passwordVersion !== claims.v) return null;
    return {
      name: account.name,
      role: account.role,
      via: 'session',
      passwordVersion: account.passwordVersion,
    };
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
    return { name: account.name, role: account.role, via: 'basic', passwordVersion: account.passwordVersion };
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

/** Keyed by a hash so the cache never holds a plain password. */
function basicCacheKey(c: BasicCredentials): string {
  return hashToken(`${c.name}\u0000${c.password}`);
}
