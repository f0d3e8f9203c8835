import { AppError } from '../errors.js';
import type { JobStore } from '../store/types.js';
import { generateToken, hashToken, safeEqual } from './passwords.js';

/** Worker token names: what `workers token create NAME` accepts, and what appears in worker ids. */
export const WORKER_TOKEN_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

export interface WorkerTokenInfo {
  name: string;
  /** `store`: created with `comfy-multi workers token create`; `config`: from WORKER_TOKENS. */
  source: 'store' | 'config';
  createdAt: number | null;
  revokedAt: number | null;
}

export interface CreatedWorkerToken {
  name: string;
  /** The plain token, shown once; only its sha256 is stored. */
  token: string;
}

/**
 * Worker tokens: the credentials worker agents present as `Authorization: Bearer <token>`.
 * Tokens created here live in the store as sha256 hashes only; WORKER_TOKENS adds fixed ones for
 * scripted setups. Verification hashes the presented token and compares it with every known hash
 * in constant time, so neither timing nor the answer tells a wrong token from a revoked one.
 */
export class WorkerTokenService {
  private readonly configHashes: { name: string; hash: string }[];
  /** Valid tokens' hashes as last verified in the store, for {@link verifyHashRecent}. */
  private readonly recent = new Map<string, { name: string; at: number }>();

  constructor(
    private readonly store: JobStore,
    configTokens: readonly { name: string; secret: string }[] = [],
    private readonly clock: () => number = Date.now,
  ) {
    this.configHashes = configTokens.map((t) => ({ name: t.name, hash: hashToken(t.secret) }));
  }

  /** Creates a token (or re-issues a revoked name). Throws CONFLICT when the name is in use. */
  async create(name: string): Promise<CreatedWorkerToken> {
    if (!WORKER_TOKEN_NAME_RE.test(name)) {
      throw new AppError(
        'VALIDATION_FAILED',
        `"${name}" is not a valid worker token name: use 1–64 of A-Z a-z 0-9 _ . - .`,
      );
    }
    const existing = (await this.store.listWorkerTokens()).find((t) => t.name === name);
    if (existing && existing.revokedAt === null) {
      throw new AppError('CONFLICT', `A worker token named ${name} already exists; revoke it first.`);
    }
    const token = generateToken();
    await this.store.putWorkerToken({
      name,
      tokenHash: hashToken(token),
      createdAt: this.clock(),
      revokedAt: null,
    });
    return { name, token };
  }

  /** Every token, stored ones first (sorted by name), then those from WORKER_TOKENS. */
  async list(): Promise<WorkerTokenInfo[]> {
    const stored = (await this.store.listWorkerTokens())
      .map((t): WorkerTokenInfo => ({
        name: t.name,
        source: 'store',
        createdAt: t.createdAt,
        revokedAt: t.revokedAt,
      }))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const fromConfig = this.configHashes.map((t): WorkerTokenInfo => ({
      name: t.name,
      source: 'config',
      createdAt: null,
      revokedAt: null,
    }));
    return [...stored, ...fromConfig];
  }

  /** Revokes a stored token; false when there is no such (unrevoked) token. */
  async revoke(name: string): Promise<boolean> {
    const existing = (await this.store.listWorkerTokens()).find((t) => t.name === name);
    if (!existing || existing.revokedAt !== null) return false;
    for (const [hash, r] of this.recent) if (r.name === name) this.recent.delete(hash);
    return this.store.revokeWorkerToken(name, this.clock());
  }

  /** The name of the token, or null when it is unknown or revoked. */
  async verify(token: string): Promise<string | null> {
    return this.verifyHash(hashToken(token));
  }

  /**
   * As {@link verify}, from the token's sha256: the control plane re-checks a connected worker's
   * token with it (a revoke may happen in another process, e.g. the CLI) without keeping the token.
   */
  async verifyHash(hash: string): Promise<string | null> {
    const stored = await this.store.listWorkerTokens();
    // Compare against every candidate, without stopping at the first match.
    let match: string | null = null;
    for (const t of stored) {
      if (safeEqual(t.tokenHash, hash) && t.revokedAt === null && match === null) match = t.name;
    }
    for (const t of this.configHashes) {
      if (safeEqual(t.hash, hash) && match === null) match = t.name;
    }
    if (match === null) this.recent.delete(hash);
    else this.recent.set(hash, { name: match, at: this.clock() });
    return match;
  }

  /**
   * As {@link verifyHash}, reusing a valid answer the store gave at most `maxAgeMs` ago: for a
   * worker's file transfers (each output upload would otherwise read every token on the round
   * trip). A revoke here takes effect at once; one made by another process (the CLI) within
   * `maxAgeMs`, or sooner: the control plane re-checks connected workers in the store on every
   * heartbeat and before every job it hands out, and a revoked answer there ends the reuse.
   */
  async verifyHashRecent(hash: string, maxAgeMs: number): Promise<string | null> {
    const hit = this.recent.get(hash);
    if (hit && this.clock() - hit.at <= maxAgeMs) return hit.name;
    return this.verifyHash(hash);
  }
}
