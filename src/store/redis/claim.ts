/**
 * Claiming on Redis, in two round trips. `gather` (script `heads-since`) reads the settings and
 * every active user's head (kept up to date in `heads:seq` / `heads:prio`, with the user's serve
 * state, by every script that changes them); the claimer caches the heads and Redis sends only
 * those that changed since the last claim. `selectJob` from the policy picks (after `preselect`
 * narrowed the heads to the ones it can look at); the `claim` script applies the choice (running,
 * lease, lastServed, running count, skips) only if the job is still pending, else the claim starts
 * over. Claims from one store instance are serialised, so only claimers in other processes can
 * make a claim start over.
 */
import { randomUUID } from 'node:crypto';
import { selectJob, type Candidate, type SelectInput, type UserServeState } from '../../scheduler/policy.js';
import type { ClaimRequest, Job, QueueMode, QueueSettings } from '../types.js';
import { preselect } from './preselect.js';
import { headFrom, parseJob, type Flat, type Head, type HeadTuple } from './redis-rows.js';
import type { RedisSettings } from './settings.js';
import type { RedisStoreCore } from './store-core.js';

/** Claim rounds lost to other claimers before giving up with null. */
const MAX_CLAIM_ROUNDS = 50;

export class RedisClaimer {
  private claimQueue: Promise<unknown> = Promise.resolve();
  /** The heads as of the last claim, by user (never mutated by the policy). */
  private readonly heads: { mode: QueueMode | null; epoch: string; tick: string; byUser: Map<string, Head> } =
    {
      mode: null,
      epoch: '',
      tick: '0',
      byUser: new Map(),
    };

  constructor(
    private readonly core: RedisStoreCore,
    private readonly settings: RedisSettings,
  ) {}

  /**
   * Claims run one at a time per store instance: concurrent claimers in one process would all
   * pick the same top job and all but one would lose and start over. Claimers in other processes
   * still race; the claim script settles that.
   */
  claim(req: ClaimRequest): Promise<Job | null> {
    const result = this.claimQueue.then(() => this.claimNow(req));
    this.claimQueue = result.catch(() => undefined);
    return result;
  }

  private async claimNow(req: ClaimRequest): Promise<Job | null> {
    const k = this.core.keys;
    const defaultPaused = this.core.defaults.paused ? '1' : '0';
    const warm = new Set(req.warmModels);
    for (let round = 0; round < MAX_CLAIM_ROUNDS; round++) {
      const g = await this.gather();
      if (!g) return null;
      const { mode, settings, users } = g;
      // Heads only (one per user): a user whose head this worker cannot run waits for another GPU.
      const runnable = req.runnable;
      const candidates = runnable ? g.candidates.filter((c) => runnable(c.models)) : g.candidates;
      if (candidates.length === 0) return null;
      const input: SelectInput = {
        mode,
        candidates,
        users,
        limits: settings.limits,
        userLimits: settings.userLimits,
        warmModels: warm,
        affinity: req.affinity,
      };
      // Same decision as selectJob(input), without sorting every user's head (see preselect.ts).
      const selection = selectJob({ ...input, candidates: preselect(input) });
      if (!selection) return null;
      const r = await this.core.run(
        'claim',
        [...this.core.headsKeys(), k.settings, k.served, k.leases],
        [
          k.prefix,
          defaultPaused,
          selection.job.id,
          req.workerId,
          req.now,
          req.now + req.leaseMs,
          ...selection.skipped.map((c) => c.id),
        ],
      );
      if (r[0] === 'ok') return parseJob(r[1]);
      if (r[0] === 'paused') return null;
      // 'lost': another claimer took the job between the two round trips; pick again.
    }
    return null;
  }

  /**
   * One round trip (`heads-since`): the settings and the active users' heads under the mode's
   * head order. The store keeps the heads it saw last; Redis sends only the users whose head
   * changed since then (usually one or two per claim), or everything when the cache is from
   * another mode or epoch. Null when paused or nothing is pending.
   */
  private async gather(): Promise<{
    mode: QueueMode;
    settings: QueueSettings;
    candidates: Candidate[];
    users: Map<string, UserServeState>;
  } | null> {
    const k = this.core.keys;
    const cache = this.heads;
    const r = await this.core.run(
      'heads-since',
      [k.settings, k.headsSeq, k.headsPrio, k.headsChanged, k.headsMeta],
      [
        this.core.defaults.mode,
        this.core.defaults.paused ? '1' : '0',
        cache.mode ?? '',
        cache.epoch,
        cache.tick,
      ],
    );
    const settings = this.settings.settingsFrom(r[0] as Flat);
    if (r[1] === 'paused') return null;
    const [, kind, epoch, tick, pairs] = r as [Flat, 'full' | 'delta', string, string, Flat];
    if (kind === 'full') {
      cache.byUser.clear();
      // A keyspace without an epoch (new, or flushed under us): give it one for the next claim.
      if (epoch === '') await this.core.io(this.core.client.hsetnx(k.headsMeta, 'epoch', randomUUID()));
    }
    for (let i = 0; i + 1 < pairs.length; i += 2) {
      const user = pairs[i]!;
      const text = pairs[i + 1]!;
      if (text === '') cache.byUser.delete(user);
      else cache.byUser.set(user, headFrom(JSON.parse(text) as HeadTuple));
    }
    Object.assign(cache, { mode: settings.mode, epoch, tick });
    if (cache.byUser.size === 0) return null;
    const candidates: Candidate[] = [];
    const users = new Map<string, UserServeState>();
    for (const h of cache.byUser.values()) {
      candidates.push(h.candidate);
      users.set(h.candidate.user, h.state);
    }
    return { mode: settings.mode, settings, candidates, users };
  }
}
