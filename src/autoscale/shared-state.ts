/**
 * The autoscaler with several control-plane processes: its loop runs on one process at a time (the
 * `autoscaler` lease, renewed every tick), because two loops would each start GPUs for the same
 * waiting jobs. Every process still serves the autoscaler's routes: the leader writes what the
 * dashboard shows (its view) to the store after each tick, and the others show that copy. The
 * instructor's overrides (hold N warm, stop all) can be set on any process: they are stored, and
 * the leader is told on the `autoscale` topic (and reads them again when it takes over).
 */
import type { ClusterBus } from '../cluster/index.js';
import type { BlobStore } from '../store/types.js';
import type { AutoscaleView } from './view.js';

const NS = 'autoscale';
const LEASE = 'autoscaler';
const TOPIC = 'autoscale';

export interface Overrides {
  hold: { count: number; until: number } | null;
  stopAll: boolean;
}

export class AutoscaleShared {
  constructor(
    private readonly cluster: Pick<ClusterBus, 'holdLease' | 'releaseLease' | 'publish' | 'subscribe'>,
    private readonly store: Pick<BlobStore, 'getBlob' | 'putBlob'>,
    /** Lease length: a few ticks, so a dead leader is replaced within it. */
    private readonly leaseMs: number,
  ) {}

  /** Takes or renews the lease; true while this process runs the loop. */
  lead(): Promise<boolean> {
    return this.cluster.holdLease(LEASE, this.leaseMs);
  }

  release(): Promise<void> {
    return this.cluster.releaseLease(LEASE);
  }

  async saveView(v: AutoscaleView): Promise<void> {
    await this.store.putBlob(NS, 'view', JSON.stringify(v));
  }

  async loadView(): Promise<AutoscaleView | null> {
    return parse<AutoscaleView>(await this.store.getBlob(NS, 'view'));
  }

  async saveOverrides(o: Overrides): Promise<void> {
    await this.store.putBlob(NS, 'overrides', JSON.stringify(o));
    await this.cluster.publish(TOPIC, { overrides: true });
  }

  async loadOverrides(): Promise<Overrides | null> {
    const o = parse<Partial<Overrides>>(await this.store.getBlob(NS, 'overrides'));
    if (!o) return null;
    const h = o.hold;
    return {
      hold: h && typeof h.count === 'number' && typeof h.until === 'number' ? h : null,
      stopAll: o.stopAll === true,
    };
  }

  /** Another process changed the overrides. */
  onOverrides(handler: () => void): () => void {
    return this.cluster.subscribe(TOPIC, handler);
  }
}

function parse<T>(raw: string | null): T | null {
  if (!raw) return null;
  try {
    return JSON.parse(raw) as T;
  } catch {
    return null;
  }
}
