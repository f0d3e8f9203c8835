/**
 * Serverless GPU containers (RunPod serverless endpoints, Verda container deployments) are not
 * started one by one: the platform keeps a number of identical replicas of one image running, and
 * the only lever is that number (its minimum; the platform's own request-based scaling never fires,
 * since our jobs reach the replicas through the control plane, not through the platform's queue).
 *
 * A {@link ReplicaPoolProvider} maps the autoscaler's instances onto that number: each `start`
 * raises the minimum by one and holds a *slot*; each `stop` gives a slot back and lowers it. The
 * replicas' agents choose their own names (the platform, not we, names a replica), so the
 * autoscaler binds each slot to the next unbound worker of this provider that registers
 * ({@link bindPoolWorkers}). Scaling down, the platform picks which replica ends: the autoscaler
 * only shrinks a pool that has an idle replica, and a replica ended while it held a job gets
 * SIGTERM (the agent finishes or hands back within its grace) — a job is never lost, at worst run
 * again.
 */
import type { Provider, ProviderInstance, StartRequest } from './provider.js';

export interface PoolScale {
  min: number;
  max: number;
}

export abstract class ReplicaPoolProvider implements Provider {
  readonly pool = true;
  abstract readonly name: string;
  abstract readonly instanceType: string;
  /** Slot id → the name the autoscaler gave it at start. */
  private readonly slots = new Map<string, string>();
  private adoptedChecked = false;
  private n = 0;

  /** The platform's current minimum and maximum replica counts. */
  protected abstract readScale(): Promise<PoolScale>;
  /** Sets them (the minimum is what keeps replicas running). */
  protected abstract writeScale(scale: PoolScale): Promise<void>;
  /** Where the pool lives, for messages and --dry-run. */
  protected abstract where(): string;
  abstract check(): Promise<void>;

  describeStart(req: StartRequest): string {
    return `${this.name}: raise the minimum replicas of ${this.where()} by one (a replica registers as its own name; slot for ${req.name})`;
  }

  async start(req: StartRequest): Promise<ProviderInstance> {
    const scale = await this.readScale();
    const min = scale.min + 1;
    await this.writeScale({ min, max: Math.max(scale.max, min) });
    const id = `slot-${(++this.n).toString(36)}-${req.name}`;
    this.slots.set(id, req.name);
    return { id, name: req.name };
  }

  async stop(id: string): Promise<void> {
    if (!this.slots.has(id)) return;
    const scale = await this.readScale();
    await this.writeScale({ min: Math.max(0, scale.min - 1), max: scale.max });
    this.slots.delete(id);
  }

  /**
   * The slots held. After a control-plane restart the platform may still keep replicas running
   * for slots this process never saw: they are listed (named `adopted-…`) so the autoscaler adopts,
   * binds and eventually stops them instead of paying for them for ever.
   */
  async list(): Promise<ProviderInstance[]> {
    if (!this.adoptedChecked) {
      const { min } = await this.readScale();
      this.adoptedChecked = true;
      for (let i = this.slots.size; i < min; i++) {
        const name = `adopted-${this.name}-${i}`;
        this.slots.set(`slot-adopted-${i}`, name);
      }
    }
    return [...this.slots].map(([id, name]) => ({ id, name }));
  }

  async close(): Promise<void> {}
}

export interface PoolSlot {
  /** The instance's current key (worker name it is bound to, or its start name). */
  name: string;
  requestedAt: number;
}

/**
 * Which slots take which newly registered replicas: every slot whose worker is not online is free;
 * every online worker of this provider that no slot holds is unbound; the oldest free slots take
 * the unbound workers in the order they registered. Returns `[slot name, worker name]` pairs.
 */
export function bindPoolWorkers(
  slots: readonly PoolSlot[],
  poolWorkers: readonly string[],
): [string, string][] {
  const held = new Set(slots.map((s) => s.name));
  const online = new Set(poolWorkers);
  const free = slots.filter((s) => !online.has(s.name)).sort((a, b) => a.requestedAt - b.requestedAt);
  const unbound = poolWorkers.filter((w) => !held.has(w));
  const pairs: [string, string][] = [];
  for (let i = 0; i < Math.min(free.length, unbound.length); i++) pairs.push([free[i]!.name, unbound[i]!]);
  return pairs;
}
