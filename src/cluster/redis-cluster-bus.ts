/**
 * The cluster bus over Redis (STORE=redis): pub/sub for topics, `SET NX PX` for `once`, and a
 * compare-and-renew script for leases — primitives the store already relies on, no hand-written
 * leader election. See cluster-bus.ts for the terms and the delivery promise.
 */
import type { Redis } from 'ioredis';
import { createRedisClient, waitUntilReady } from '../store/redis/redis-client.js';
import { newProcessId, type ClusterBus, type ClusterHandler, type Unsubscribe } from './cluster-bus.js';

/** Renew when we hold it, else take it when free. Returns 1 while held by ARGV[1]. */
const HOLD_LUA = `
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if cur then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
`;

const RELEASE_LUA = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`;

export interface RedisClusterBusOptions {
  url: string;
  /** REDIS_PREFIX: channels and keys are `<prefix>cluster:…`. */
  prefix: string;
  processId?: string;
  /** Connection problems (already redacted) and handler errors. */
  onError?: (err: unknown) => void;
}

interface Envelope {
  /** Sending process. */
  f: string;
  /** The message. */
  m: unknown;
}

export class RedisClusterBus implements ClusterBus {
  readonly shared = true;
  readonly processId: string;
  private readonly handlers = new Map<string, Set<ClusterHandler>>();
  private readonly resyncHandlers = new Set<() => void>();
  private readonly onError: (err: unknown) => void;
  private everReady = false;
  private closed = false;

  private constructor(
    private readonly pub: Redis,
    private readonly sub: Redis,
    private readonly prefix: string,
    opts: RedisClusterBusOptions,
  ) {
    this.processId = opts.processId ?? newProcessId();
    this.onError = opts.onError ?? (() => {});
    sub.on('messageBuffer', (channel: Buffer, payload: Buffer) => this.receive(channel.toString(), payload));
    // ioredis re-subscribes by itself after a reconnect; what was published meanwhile is gone, so
    // subscribers re-read the store.
    sub.on('ready', () => {
      if (!this.everReady) {
        this.everReady = true;
        return;
      }
      for (const h of [...this.resyncHandlers]) this.safely(() => h());
    });
  }

  static async open(opts: RedisClusterBusOptions): Promise<RedisClusterBus> {
    const onError = opts.onError ?? (() => {});
    const pub = createRedisClient(opts.url, { name: 'cluster', onError });
    // A subscriber waits through outages instead of failing its (re)subscribe commands.
    const sub = createRedisClient(opts.url, {
      name: 'cluster-sub',
      onError,
      maxRetriesPerRequest: null,
      autoPipelining: false,
    });
    try {
      await Promise.all([waitUntilReady(pub, opts.url, 5000), waitUntilReady(sub, opts.url, 5000)]);
    } catch (err) {
      pub.disconnect();
      sub.disconnect();
      throw err;
    }
    const bus = new RedisClusterBus(pub, sub, opts.prefix, opts);
    bus.everReady = true;
    return bus;
  }

  private channel(topic: string): string {
    return `${this.prefix}cluster:${topic}`;
  }

  async publish(topic: string, message: unknown): Promise<void> {
    if (this.closed) return;
    const envelope: Envelope = { f: this.processId, m: message ?? null };
    await this.pub.publish(this.channel(topic), JSON.stringify(envelope));
  }

  subscribe(topic: string, handler: ClusterHandler): Unsubscribe {
    const channel = this.channel(topic);
    let set = this.handlers.get(channel);
    if (!set) {
      this.handlers.set(channel, (set = new Set()));
      this.sub.subscribe(channel).catch((err: unknown) => this.onError(err));
    }
    set.add(handler);
    return () => {
      const s = this.handlers.get(channel);
      if (!s) return;
      s.delete(handler);
      if (s.size === 0 && !this.closed) {
        this.handlers.delete(channel);
        this.sub.unsubscribe(channel).catch((err: unknown) => this.onError(err));
      }
    };
  }

  onResync(handler: () => void): Unsubscribe {
    this.resyncHandlers.add(handler);
    return () => void this.resyncHandlers.delete(handler);
  }

  async once(key: string, ttlMs: number): Promise<boolean> {
    const ok = await this.pub.set(`${this.prefix}cluster:once:${key}`, this.processId, 'PX', ttlMs, 'NX');
    return ok === 'OK';
  }

  async holdLease(name: string, ttlMs: number): Promise<boolean> {
    const r = await this.pub.eval(HOLD_LUA, 1, `${this.prefix}cluster:lease:${name}`, this.processId, ttlMs);
    return r === 1;
  }

  async releaseLease(name: string): Promise<void> {
    await this.pub.eval(RELEASE_LUA, 1, `${this.prefix}cluster:lease:${name}`, this.processId);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.handlers.clear();
    this.resyncHandlers.clear();
    await Promise.allSettled([this.pub.quit(), this.sub.quit()]);
  }

  private receive(channel: string, payload: Buffer): void {
    const set = this.handlers.get(channel);
    if (!set || set.size === 0) return;
    let env: Envelope;
    try {
      env = JSON.parse(payload.toString('utf8')) as Envelope;
    } catch (err) {
      this.onError(err);
      return;
    }
    if (env.f === this.processId) return;
    for (const h of [...set]) this.safely(() => h(env.m, env.f));
  }

  private safely(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.onError(err);
    }
  }
}
