/**
 * The queue settings of the Redis store (hash `settings`): reading them over the configured
 * defaults, and changing them with the `update-settings` script. The claim reads them too, in the
 * same round trip as the heads (claim.ts), so decoding lives here once.
 */
import { AppError } from '../../errors.js';
import { QUEUE_MODES, type QueueLimits, type QueueMode, type QueueSettings } from '../types.js';
import { checkLimits, record, type Flat } from './redis-rows.js';
import type { RedisStoreCore } from './store-core.js';

export class RedisSettings {
  /** The last `userLimits` JSON parsed: every claim reads the settings, and they rarely change. */
  private userLimitsCache: { json: string; value: QueueSettings['userLimits'] } = { json: '{}', value: {} };

  constructor(private readonly core: RedisStoreCore) {}

  /** Stored settings (HGETALL, as a hash or flat) over the defaults; the defaults while none are stored. */
  settingsFrom(stored: Flat | Record<string, string | undefined>): QueueSettings {
    const h = Array.isArray(stored) ? record(stored) : stored;
    if (h.mode === undefined && h.paused === undefined && h.maxPendingPerUser === undefined) {
      return structuredClone(this.core.defaults);
    }
    const d = this.core.defaults;
    const ulJson = h.userLimits ?? JSON.stringify(d.userLimits);
    if (ulJson !== this.userLimitsCache.json) {
      this.userLimitsCache = { json: ulJson, value: JSON.parse(ulJson) as QueueSettings['userLimits'] };
    }
    return {
      mode: (h.mode as QueueMode | undefined) ?? d.mode,
      paused: h.paused === undefined ? d.paused : h.paused === '1',
      limits: {
        maxPendingPerUser:
          h.maxPendingPerUser === undefined ? d.limits.maxPendingPerUser : Number(h.maxPendingPerUser),
        maxRunningPerUser:
          h.maxRunningPerUser === undefined ? d.limits.maxRunningPerUser : Number(h.maxRunningPerUser),
      },
      userLimits: structuredClone(this.userLimitsCache.value),
    };
  }

  async getSettings(): Promise<QueueSettings> {
    return this.settingsFrom(await this.core.io(this.core.client.hgetall(this.core.keys.settings)));
  }

  async updateSettings(
    patch: Partial<Omit<QueueSettings, 'limits'>> & { limits?: Partial<QueueLimits> },
  ): Promise<QueueSettings> {
    const d = this.core.defaults;
    const pairs: (string | number)[] = [];
    if (patch.mode !== undefined) {
      if (!QUEUE_MODES.includes(patch.mode))
        throw new AppError('VALIDATION_FAILED', `Unknown queue mode ${patch.mode}.`);
      pairs.push('mode', patch.mode);
    }
    if (patch.paused !== undefined) pairs.push('paused', patch.paused ? '1' : '0');
    if (patch.limits) {
      checkLimits(patch.limits, 'limits');
      if (patch.limits.maxPendingPerUser !== undefined)
        pairs.push('maxPendingPerUser', patch.limits.maxPendingPerUser);
      if (patch.limits.maxRunningPerUser !== undefined)
        pairs.push('maxRunningPerUser', patch.limits.maxRunningPerUser);
    }
    if (patch.userLimits !== undefined) {
      for (const [user, l] of Object.entries(patch.userLimits)) checkLimits(l, `userLimits.${user}`);
      pairs.push('userLimits', JSON.stringify(patch.userLimits));
    }
    const r = await this.core.run(
      'update-settings',
      [this.core.keys.settings],
      [
        d.mode,
        d.paused ? '1' : '0',
        d.limits.maxPendingPerUser,
        d.limits.maxRunningPerUser,
        JSON.stringify(d.userLimits),
        ...pairs,
      ],
    );
    return this.settingsFrom(r as Flat);
  }
}
