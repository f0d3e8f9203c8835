import type { Logger } from 'pino';
import type { WebSocket } from 'ws';
import type { LiveState } from './live-state.js';
import type { Sampler } from './sampler.js';
import type { LiveMessage, LiveSections, SamplePoint, SectionName } from './view-types.js';

const ALL_SECTIONS: SectionName[] = [
  'queue',
  'pending',
  'workers',
  'orphans',
  'participants',
  'failures',
  'audit',
  'broadcast',
  'health',
  'autoscale',
  'downloads',
  'workshopModels',
];
const OPEN = 1;
/** A dashboard this far behind gets disconnected (it reconnects and starts fresh). */
const MAX_BUFFERED = 4 * 1024 * 1024;
/** Keeps proxies from closing idle sockets, and finds dead ones. */
const PING_MS = 25_000;
/** After a failed refresh (store away), try again this much later. */
const RETRY_MS = 2000;

export interface LiveHubOptions {
  /** At most one push per this many ms; bursts of changes coalesce. Default 250. */
  minIntervalMs?: number;
  logger?: Logger;
  clock?: () => number;
}

interface Client {
  socket: WebSocket;
  user: string;
  alive: boolean;
}

/**
 * The dashboard's live stream (`GET /admin/api/live`, WebSocket). Producers mark sections dirty
 * (queue events, worker changes, audit entries, ...); at most every 250 ms the dirty sections are
 * recomputed once, compared with what was last sent, and only the changed ones go to every open
 * dashboard as a `patch`. A new dashboard first gets a `hello` with every section and the chart
 * series; new chart points go out as `sample` as they are taken. Clients never poll.
 */
export class LiveHub {
  private readonly clients = new Set<Client>();
  private readonly dirty = new Set<SectionName>(ALL_SECTIONS);
  private readonly cache: Partial<LiveSections> = {};
  private readonly sent = new Map<SectionName, string>();
  private readonly minIntervalMs: number;
  private readonly clock: () => number;
  private timer: NodeJS.Timeout | undefined;
  private pingTimer: NodeJS.Timeout | undefined;
  private lastFlush = 0;
  private chain: Promise<void> = Promise.resolve();
  private closed = false;
  private readonly onSample = (point: SamplePoint) =>
    this.broadcast({ type: 'sample', serverTime: this.clock(), point });

  constructor(
    private readonly state: LiveState,
    private readonly sampler: Sampler,
    private readonly opts: LiveHubOptions = {},
  ) {
    this.minIntervalMs = opts.minIntervalMs ?? 250;
    this.clock = opts.clock ?? Date.now;
    sampler.on('sample', this.onSample);
    this.pingTimer = setInterval(() => this.ping(), PING_MS);
    this.pingTimer.unref();
  }

  /** Number of open dashboards. */
  get size(): number {
    return this.clients.size;
  }

  /** Something these sections show changed; a push follows within `minIntervalMs`. */
  markDirty(...names: SectionName[]): void {
    for (const n of names) this.dirty.add(n);
    this.schedule();
  }

  /** Takes over an upgraded socket of an instructor: sends the hello, then patches. */
  attach(socket: WebSocket, user: string): void {
    const client: Client = { socket, user, alive: true };
    socket.on('pong', () => {
      client.alive = true;
    });
    socket.on('message', () => {
      /* the page sends nothing we need; actions go over HTTP */
    });
    socket.on('error', (err) => this.opts.logger?.debug({ err }, 'dashboard socket error'));
    socket.on('close', () => this.clients.delete(client));
    this.run(async () => {
      if (socket.readyState !== OPEN) return;
      await this.refreshAndPush();
      const hello: LiveMessage = {
        type: 'hello',
        serverTime: this.clock(),
        user,
        sampleMs: this.sampler.intervalMs,
        sections: this.cache as LiveSections,
        series: this.sampler.series(),
      };
      this.send(client, JSON.stringify(hello));
      this.clients.add(client);
    });
  }

  /** Closes every dashboard socket and stops pushing. */
  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    clearInterval(this.pingTimer);
    this.sampler.off('sample', this.onSample);
    for (const c of this.clients) c.socket.close(1001, 'server shutting down');
    this.clients.clear();
  }

  /** The current state, freshly computed where dirty (for `GET /admin/api/state`). */
  async snapshot(): Promise<LiveSections> {
    let out: LiveSections | undefined;
    await this.run(async () => {
      await this.refreshAndPush();
      out = { ...(this.cache as LiveSections) };
    });
    return out!;
  }

  private run(fn: () => Promise<void>): Promise<void> {
    const next = this.chain.then(fn).catch((err: unknown) => {
      this.opts.logger?.error({ err }, 'dashboard live update failed');
    });
    this.chain = next;
    return next;
  }

  private schedule(delay?: number): void {
    if (this.timer || this.closed) return;
    const wait = delay ?? Math.max(0, this.lastFlush + this.minIntervalMs - this.clock());
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.run(() => this.flush());
    }, wait);
    this.timer.unref();
  }

  private async flush(): Promise<void> {
    this.lastFlush = this.clock();
    if (this.clients.size === 0 || this.closed) return; // computed when someone connects
    await this.refreshAndPush();
  }

  /** Refreshes, and sends what changed to the dashboards already open (so none misses a change). */
  private async refreshAndPush(): Promise<void> {
    const changed = await this.refresh();
    if (Object.keys(changed).length > 0) {
      this.broadcast({ type: 'patch', serverTime: this.clock(), sections: changed });
    }
  }

  /** Recomputes dirty (and never computed) sections; returns those whose content changed. */
  private async refresh(): Promise<Partial<LiveSections>> {
    const names = ALL_SECTIONS.filter((n) => this.dirty.has(n) || !(n in this.cache));
    for (const n of names) this.dirty.delete(n);
    const results = await Promise.allSettled(names.map((n) => this.state.compute(n)));
    const changed: Record<string, unknown> = {};
    let failed = false;
    names.forEach((name, i) => {
      const r = results[i]!;
      if (r.status === 'rejected') {
        failed = true;
        this.dirty.add(name);
        this.opts.logger?.warn({ err: r.reason, section: name }, 'dashboard section could not be computed');
        return;
      }
      const json = JSON.stringify(r.value);
      (this.cache as Record<string, unknown>)[name] = r.value;
      if (this.sent.get(name) !== json) {
        this.sent.set(name, json);
        changed[name] = r.value;
      }
    });
    if (failed) this.schedule(RETRY_MS);
    return changed as Partial<LiveSections>;
  }

  private broadcast(message: LiveMessage): void {
    if (this.clients.size === 0) return;
    const text = JSON.stringify(message);
    for (const c of this.clients) this.send(c, text);
  }

  private send(c: Client, text: string): void {
    if (c.socket.readyState !== OPEN) return;
    if (c.socket.bufferedAmount > MAX_BUFFERED) {
      c.socket.close(1013, 'too far behind; reconnect');
      this.clients.delete(c);
      return;
    }
    c.socket.send(text);
  }

  private ping(): void {
    for (const c of this.clients) {
      if (!c.alive) {
        c.socket.terminate();
        this.clients.delete(c);
        continue;
      }
      c.alive = false;
      if (c.socket.readyState === OPEN) c.socket.ping();
    }
  }
}
