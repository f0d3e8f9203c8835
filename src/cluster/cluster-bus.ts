/**
 * What control-plane processes say to each other when several share one store (STORE=redis).
 *
 * Terms:
 * - **process**: one `comfy-multi serve`. With SQLite there is exactly one; with Redis and the S3
 *   file store any number of identical ones run behind a load balancer.
 * - **topic**: a named channel of small JSON messages. A message published on a topic reaches the
 *   handlers of every *other* process (the publisher has already acted on it locally). Delivery is
 *   best effort and live only (Redis pub/sub): a process that was disconnected misses messages, so
 *   every subscriber also registers an `onResync` handler that re-reads what it needs from the
 *   store after a reconnect. Durable, replayable data (job events for a reconnecting `/ws`) does
 *   not belong here; it lives in the store.
 * - **lease**: a named, time-limited right held by at most one process at a time (scheduled
 *   backups, the alert sender, the autoscaler loop). Holders renew it before it lapses; a process
 *   that dies simply stops renewing and another takes over after `ttlMs`.
 * - **once**: the first process to claim a key within `ttlMs` wins (an alert is sent once, not
 *   once per process).
 *
 * The single-process default (`LocalClusterBus`) costs nothing: publishing reaches no one and every
 * lease is ours. Tests can join several in-process buses to one `MemoryClusterHub` to play several
 * processes without Redis.
 */
import { randomBytes } from 'node:crypto';

export type Unsubscribe = () => void;

/** A message handler: the message as published (parsed JSON) and the sending process's id. */
export type ClusterHandler = (message: unknown, fromProcess: string) => void;

export interface ClusterBus {
  /** This process's id: random per start, shown in logs and `/health` of a replica. */
  readonly processId: string;
  /** True when other processes may share the store (Redis); false for the embedded default. */
  readonly shared: boolean;
  /** Sends `message` (JSON-serialisable, small) to every other process subscribed to `topic`. */
  publish(topic: string, message: unknown): Promise<void>;
  /** Receives other processes' messages on `topic`. Handlers run synchronously; keep them cheap. */
  subscribe(topic: string, handler: ClusterHandler): Unsubscribe;
  /**
   * Called after the connection to the other processes came back (messages may have been missed
   * meanwhile): re-read from the store whatever a missed message would have told you.
   */
  onResync(handler: () => void): Unsubscribe;
  /** True for the first caller of `key` within `ttlMs`, across all processes. */
  once(key: string, ttlMs: number): Promise<boolean>;
  /** Takes or renews the named lease for `ttlMs`; true while this process holds it. */
  holdLease(name: string, ttlMs: number): Promise<boolean>;
  /** Gives the lease up at once if this process holds it (a graceful stop). */
  releaseLease(name: string): Promise<void>;
  close(): Promise<void>;
}

export function newProcessId(): string {
  return randomBytes(6).toString('hex');
}

/** Several in-process buses joined as if they were processes sharing one Redis (tests). */
export class MemoryClusterHub {
  readonly buses = new Set<LocalClusterBus>();
  private readonly onceKeys = new Map<string, number>();
  private readonly leases = new Map<string, { holder: string; until: number }>();

  constructor(private readonly now: () => number = Date.now) {}

  /** A bus for one more simulated process. */
  join(processId: string = newProcessId()): LocalClusterBus {
    const bus = new LocalClusterBus(processId, this);
    this.buses.add(bus);
    return bus;
  }

  /** @internal */
  deliver(from: LocalClusterBus, topic: string, message: unknown): void {
    // JSON round trip: what crosses Redis is JSON, so tests see the same shapes.
    const copy: unknown = JSON.parse(JSON.stringify(message ?? null));
    for (const bus of this.buses) if (bus !== from) bus.receive(topic, copy, from.processId);
  }

  /** @internal */
  claimOnce(key: string, ttlMs: number): boolean {
    const t = this.now();
    const until = this.onceKeys.get(key);
    if (until !== undefined && until > t) return false;
    this.onceKeys.set(key, t + ttlMs);
    return true;
  }

  /** @internal */
  hold(name: string, holder: string, ttlMs: number): boolean {
    const t = this.now();
    const cur = this.leases.get(name);
    if (cur && cur.until > t && cur.holder !== holder) return false;
    this.leases.set(name, { holder, until: t + ttlMs });
    return true;
  }

  /** @internal */
  release(name: string, holder: string): void {
    if (this.leases.get(name)?.holder === holder) this.leases.delete(name);
  }

  /** Simulates a reconnect of every bus (their resync handlers run). */
  resyncAll(): void {
    for (const bus of this.buses) bus.resync();
  }
}

/**
 * The embedded default: one process, nobody to tell. Joined to a `MemoryClusterHub`, it plays one
 * of several processes in tests.
 */
export class LocalClusterBus implements ClusterBus {
  readonly shared: boolean;
  private readonly handlers = new Map<string, Set<ClusterHandler>>();
  private readonly resyncHandlers = new Set<() => void>();
  private closed = false;

  constructor(
    readonly processId: string = newProcessId(),
    private readonly hub: MemoryClusterHub | null = null,
    private readonly onHandlerError: (err: unknown) => void = () => {},
  ) {
    this.shared = hub !== null;
  }

  publish(topic: string, message: unknown): Promise<void> {
    if (!this.closed) this.hub?.deliver(this, topic, message);
    return Promise.resolve();
  }

  subscribe(topic: string, handler: ClusterHandler): Unsubscribe {
    let set = this.handlers.get(topic);
    if (!set) this.handlers.set(topic, (set = new Set()));
    set.add(handler);
    return () => void this.handlers.get(topic)?.delete(handler);
  }

  onResync(handler: () => void): Unsubscribe {
    this.resyncHandlers.add(handler);
    return () => void this.resyncHandlers.delete(handler);
  }

  once(key: string, ttlMs: number): Promise<boolean> {
    return Promise.resolve(this.hub ? this.hub.claimOnce(key, ttlMs) : true);
  }

  holdLease(name: string, ttlMs: number): Promise<boolean> {
    return Promise.resolve(this.hub ? this.hub.hold(name, this.processId, ttlMs) : true);
  }

  releaseLease(name: string): Promise<void> {
    this.hub?.release(name, this.processId);
    return Promise.resolve();
  }

  close(): Promise<void> {
    this.closed = true;
    this.hub?.buses.delete(this);
    this.handlers.clear();
    this.resyncHandlers.clear();
    return Promise.resolve();
  }

  /** @internal Delivery from the hub. */
  receive(topic: string, message: unknown, from: string): void {
    if (this.closed) return;
    for (const h of [...(this.handlers.get(topic) ?? [])]) {
      try {
        h(message, from);
      } catch (err) {
        this.onHandlerError(err);
      }
    }
  }

  /** @internal */
  resync(): void {
    for (const h of [...this.resyncHandlers]) {
      try {
        h();
      } catch (err) {
        this.onHandlerError(err);
      }
    }
  }
}
