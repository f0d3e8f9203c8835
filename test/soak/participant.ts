/**
 * One simulated workshop participant, talking to the control plane exactly as the ComfyUI
 * frontend does: `POST /login` for a session cookie, `/<user>/ws?clientId=…` (feature flags first),
 * `GET /<user>/api/queue` and `/history` after every `status` message and every (re)connect,
 * `POST /<user>/api/prompt`, `/queue {delete}` and `/interrupt` to cancel, `/upload/image`.
 *
 * It keeps what it saw: every socket session, every prompt id on its sockets, how it learned that
 * each of its jobs completed (a live `execution_success`, or a history refresh triggered by a
 * `status` message or a reconnect), so the checks can tell whether its event stream was complete.
 */
import { randomUUID } from 'node:crypto';
import WebSocket from 'ws';
import { encodeRgbPng, solidImage } from '../support/comfyui-standin/image.js';
import { modelFreePrompt, type ApiPrompt } from '../support/prompts.js';
import type { Rng } from './rng.js';

export type Learned = 'event' | 'status-refresh' | 'reconnect';

export interface ParticipantJob {
  id: string;
  acceptedAt: number;
  kind: 'plain' | 'load-image';
  seconds: number;
  cancelAsked: boolean;
  /** How and when the participant first learned the job completed (before the end-of-run check). */
  learned: { how: Learned; at: number } | null;
  /** Terminal event types received on the participant's sockets. */
  terminalEvents: string[];
}

export interface ParticipantCounters {
  submits: number;
  accepted: number;
  rejectedQueueLimit: number;
  submitErrors: number;
  submitRetries: number;
  cancels: number;
  reloads: number;
  uploads: number;
  uploadErrors: number;
  logins: number;
  typos: number;
  loginRefused: number;
  wsConnects: number;
  wsDrops: number;
  historyRefreshes: number;
  httpErrors: number;
  previews: number;
}

export interface ParticipantTiming {
  /** Think time between two "Queue" presses, in ms. */
  thinkMs: [number, number];
  /** First press after the start, in ms. */
  firstMs: [number, number];
}

const TERMINAL = new Set(['execution_success', 'execution_error', 'execution_interrupted']);
const HTTP_TIMEOUT_MS = 20_000;

export class Participant {
  readonly jobs = new Map<string, ParticipantJob>();
  readonly counters: ParticipantCounters = {
    submits: 0,
    accepted: 0,
    rejectedQueueLimit: 0,
    submitErrors: 0,
    submitRetries: 0,
    cancels: 0,
    reloads: 0,
    uploads: 0,
    uploadErrors: 0,
    logins: 0,
    typos: 0,
    loginRefused: 0,
    wsConnects: 0,
    wsDrops: 0,
    historyRefreshes: 0,
    httpErrors: 0,
    previews: 0,
  };
  /** Every prompt id seen on this participant's sockets or in its history/queue answers. */
  readonly seenPromptIds = new Set<string>();
  /** Socket sessions: open and close times (close null while open). */
  readonly sessions: { openAt: number; closeAt: number | null }[] = [];
  /** The participant's view at the very end (a last `GET /history`), for the consistency checks. */
  finalHistory: Record<string, { status?: { status_str?: string }; outputs?: unknown }> = {};

  private cookie = '';
  private readonly clientId = randomUUID().replace(/-/g, '');
  private ws: WebSocket | null = null;
  private stopping = false;
  private refreshTimer: NodeJS.Timeout | null = null;
  private refreshing: Promise<void> = Promise.resolve();
  private uploads: string[] = [];
  private colour: number;
  private readonly timers = new Set<NodeJS.Timeout>();

  constructor(
    readonly name: string,
    private readonly password: string,
    private readonly baseUrl: string,
    private readonly rng: Rng,
    private readonly timing: ParticipantTiming,
    private readonly log: (line: string) => void,
  ) {
    this.colour = rng.int(0, 0xffffff);
  }

  // ---- lifecycle -------------------------------------------------------------------------------

  /** Logs in (retrying while the server is down), opens the socket, then acts while `active()`. */
  async run(active: () => boolean): Promise<void> {
    while (!this.cookie && active()) {
      if (!(await this.login(false))) await this.sleep(3000);
    }
    this.connect('start');
    await this.think(this.rng.between(...this.timing.firstMs), active);
    while (active() && !this.stopping) {
      await this.act();
      await this.think(this.rng.between(...this.timing.thinkMs), active);
    }
  }

  /** Waits `ms`, or less once the soak's load phase is over. */
  private async think(ms: number, active: () => boolean): Promise<void> {
    const end = Date.now() + ms;
    while (Date.now() < end && active() && !this.stopping) await this.sleep(Math.min(1000, end - Date.now()));
  }

  /** A last look at the history, then the socket closes for good. */
  async finish(): Promise<void> {
    // A refresh a late `status` message asked for still counts: run it now rather than drop it.
    if (this.refreshTimer) {
      clearTimeout(this.refreshTimer);
      this.refreshTimer = null;
      this.refreshing = this.refreshing.then(() => this.refresh('status-refresh'));
    }
    await this.refreshing;
    const h = await this.get(`/${this.name}/api/history`).catch(() => null);
    if (h && h.status === 200) {
      this.finalHistory = h.json as typeof this.finalHistory;
      for (const id of Object.keys(this.finalHistory)) this.seenPromptIds.add(id);
    }
    this.close();
  }

  close(): void {
    this.stopping = true;
    for (const t of this.timers) clearTimeout(t);
    if (this.refreshTimer) clearTimeout(this.refreshTimer);
    this.ws?.terminate();
    this.ws = null;
  }

  // ---- one "turn" at the keyboard ----------------------------------------------------------------

  private async act(): Promise<void> {
    if (this.rng.chance(0.05)) await this.relogin();
    if (this.rng.chance(0.1)) await this.reload();
    let loadImage: string | undefined;
    if (this.rng.chance(0.15)) loadImage = (await this.upload()) ?? undefined;
    const n = this.rng.chance(0.2) ? this.rng.int(2, 3) : 1;
    for (let i = 0; i < n && !this.stopping; i++) await this.queue(i === 0 ? loadImage : undefined);
    if (this.rng.chance(0.12)) {
      const delay = this.rng.between(500, 6000);
      this.later(delay, () => void this.cancelOne());
    }
  }

  private later(ms: number, fn: () => void): void {
    const t = setTimeout(() => {
      this.timers.delete(t);
      if (!this.stopping) fn();
    }, ms);
    this.timers.add(t);
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((r) => {
      const t = setTimeout(() => {
        this.timers.delete(t);
        r();
      }, ms);
      this.timers.add(t);
      if (this.stopping) {
        clearTimeout(t);
        r();
      }
    });
  }

  // ---- HTTP ------------------------------------------------------------------------------------

  private async request(
    method: string,
    path: string,
    body?: { json?: unknown; form?: FormData },
  ): Promise<{ status: number; json: unknown; headers: Headers }> {
    const headers: Record<string, string> = { origin: this.baseUrl, accept: 'application/json' };
    if (this.cookie) headers.cookie = this.cookie;
    let payload: string | FormData | undefined;
    if (body?.json !== undefined) {
      headers['content-type'] = 'application/json';
      payload = JSON.stringify(body.json);
    } else if (body?.form) payload = body.form;
    const res = await fetch(`${this.baseUrl}${path}`, {
      method,
      headers,
      ...(payload !== undefined ? { body: payload } : {}),
      redirect: 'manual',
      signal: AbortSignal.timeout(HTTP_TIMEOUT_MS),
    });
    const text = await res.text();
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      json = text;
    }
    return { status: res.status, json, headers: res.headers };
  }

  private get(path: string) {
    return this.request('GET', path);
  }

  // ---- login -------------------------------------------------------------------------------------

  /** One login; with `typo`, first a wrong password (as people do). True when a session was set. */
  private async login(typo: boolean): Promise<boolean> {
    try {
      if (typo) {
        this.counters.typos++;
        const wrong = `${this.password.slice(0, -1)}${this.password.endsWith('x') ? 'y' : 'x'}`;
        await this.post('/login', { user: this.name, password: wrong }, false);
      }
      this.counters.logins++;
      const res = await this.post('/login', { user: this.name, password: this.password }, false);
      if (res.status === 429) {
        // Locked out by the room's typos: keep the session we already have (another tab).
        this.counters.loginRefused++;
        return false;
      }
      if (res.status !== 200) return false;
      const set = res.headers.getSetCookie().map((c) => c.split(';')[0]!);
      if (set.length) this.cookie = set.join('; ');
      return set.length > 0;
    } catch {
      this.counters.httpErrors++;
      return false;
    }
  }

  private async post(path: string, json: unknown, withCookie = true) {
    if (withCookie) return this.request('POST', path, { json });
    const saved = this.cookie;
    this.cookie = '';
    try {
      return await this.request('POST', path, { json });
    } finally {
      this.cookie = saved;
    }
  }

  /** A new device or a cleared browser: log in again (sometimes with a typo first). */
  private async relogin(): Promise<void> {
    await this.login(this.rng.chance(0.5));
  }

  // ---- the socket --------------------------------------------------------------------------------

  private connect(reason: 'start' | 'reconnect' | 'reload'): void {
    if (this.stopping) return;
    const url = `${this.baseUrl.replace(/^http/, 'ws')}/${this.name}/ws?clientId=${this.clientId}`;
    const ws = new WebSocket(url, { headers: { cookie: this.cookie, origin: this.baseUrl } });
    this.ws = ws;
    let session: { openAt: number; closeAt: number | null } | null = null;
    ws.on('open', () => {
      session = { openAt: Date.now(), closeAt: null };
      this.sessions.push(session);
      this.counters.wsConnects++;
      ws.send(JSON.stringify({ type: 'feature_flags', data: { supports_preview_metadata: true } }));
      // What the frontend does on (re)connect: fetch the queue and history to catch up.
      this.scheduleRefresh(reason === 'start' ? 'status-refresh' : 'reconnect', 0);
    });
    ws.on('message', (data, isBinary) => this.onMessage(data as Buffer, isBinary));
    ws.on('error', () => undefined);
    ws.on('close', () => {
      if (session) session.closeAt = Date.now();
      if (this.ws !== ws) return;
      this.ws = null;
      if (this.stopping) return;
      if (session) this.counters.wsDrops++;
      // The frontend retries every few seconds until the server is back.
      this.later(this.rng.between(500, 2500), () => this.connect('reconnect'));
    });
  }

  private onMessage(data: Buffer, isBinary: boolean): void {
    if (isBinary) {
      this.counters.previews++;
      // Type 4 previews name their prompt in a JSON metadata block.
      if (data.length >= 8 && data.readUInt32BE(0) === 4) {
        const len = data.readUInt32BE(4);
        try {
          const meta = JSON.parse(data.subarray(8, 8 + len).toString('utf8')) as { prompt_id?: unknown };
          if (typeof meta.prompt_id === 'string') this.seenPromptIds.add(meta.prompt_id);
        } catch {
          // not JSON: nothing to learn
        }
      }
      return;
    }
    let msg: { type?: unknown; data?: Record<string, unknown> };
    try {
      msg = JSON.parse(data.toString('utf8')) as typeof msg;
    } catch {
      return;
    }
    const type = typeof msg.type === 'string' ? msg.type : '';
    const id = msg.data && typeof msg.data.prompt_id === 'string' ? msg.data.prompt_id : null;
    if (id) this.seenPromptIds.add(id);
    if (type === 'status') this.scheduleRefresh('status-refresh', 250);
    if (id && TERMINAL.has(type)) {
      const job = this.jobs.get(id);
      if (job) {
        job.terminalEvents.push(type);
        if (type === 'execution_success' && !job.learned) job.learned = { how: 'event', at: Date.now() };
      }
    }
  }

  /** Debounced `GET /queue` + `GET /history?max_items=64`, like the frontend's queue sidebar. */
  private scheduleRefresh(how: Learned, delayMs: number): void {
    if (this.refreshTimer) return;
    this.refreshTimer = setTimeout(() => {
      this.refreshTimer = null;
      this.refreshing = this.refreshing.then(() => this.refresh(how));
    }, delayMs);
  }

  private async refresh(how: Learned): Promise<void> {
    if (this.stopping) return;
    try {
      const [queue, history] = await Promise.all([
        this.get(`/${this.name}/api/queue`),
        this.get(`/${this.name}/api/history?max_items=64`),
      ]);
      this.counters.historyRefreshes++;
      if (queue.status === 200) {
        const q = queue.json as { queue_running?: unknown[][]; queue_pending?: unknown[][] };
        for (const item of [...(q.queue_running ?? []), ...(q.queue_pending ?? [])])
          if (typeof item[1] === 'string') this.seenPromptIds.add(item[1]);
      }
      if (history.status !== 200) return;
      const entries = history.json as Record<
        string,
        { status?: { status_str?: string; completed?: boolean } }
      >;
      for (const [id, entry] of Object.entries(entries)) {
        this.seenPromptIds.add(id);
        const job = this.jobs.get(id);
        if (job && !job.learned && entry.status?.status_str === 'success')
          job.learned = { how, at: Date.now() };
      }
    } catch {
      this.counters.httpErrors++;
    }
  }

  /** F5: the page goes away and comes back (same clientId, as sessionStorage keeps it). */
  private async reload(): Promise<void> {
    this.counters.reloads++;
    const old = this.ws;
    this.ws = null;
    old?.close();
    await this.get(`/${this.name}/api/object_info`).catch(() => this.counters.httpErrors++);
    this.connect('reload');
  }

  // ---- jobs ----------------------------------------------------------------------------------------

  private prompt(loadImage?: string): { prompt: ApiPrompt; seconds: number } {
    // Mostly short jobs, some longer ones, like a room trying different settings.
    const seconds =
      Math.round((this.rng.chance(0.8) ? this.rng.between(1, 4) : this.rng.between(4, 9)) * 10) / 10;
    this.colour = (this.colour + 0x010203) & 0xffffff;
    const prompt = modelFreePrompt({
      color: this.colour,
      width: 64,
      height: 48,
      sleep: { seconds, steps: Math.max(2, Math.round(seconds * 2)), seed: this.rng.int(0, 1e9) },
      ...(loadImage ? { loadImage } : {}),
    });
    return { prompt, seconds };
  }

  private async queue(loadImage?: string): Promise<void> {
    const { prompt, seconds } = this.prompt(loadImage);
    const body = {
      client_id: this.clientId,
      prompt,
      extra_data: { extra_pnginfo: { workflow: { nodes: [], links: [] } } },
    };
    for (let attempt = 0; attempt < 2; attempt++) {
      this.counters.submits++;
      try {
        const res = await this.request('POST', `/${this.name}/api/prompt`, { json: body });
        if (res.status === 200) {
          const id = (res.json as { prompt_id: string }).prompt_id;
          this.counters.accepted++;
          this.jobs.set(id, {
            id,
            acceptedAt: Date.now(),
            kind: loadImage ? 'load-image' : 'plain',
            seconds,
            cancelAsked: false,
            learned: null,
            terminalEvents: [],
          });
          return;
        }
        if (res.status === 429) {
          this.counters.rejectedQueueLimit++;
          return;
        }
        this.counters.submitErrors++;
        this.log(
          `${this.name}: POST /prompt answered ${res.status}: ${JSON.stringify(res.json).slice(0, 300)}`,
        );
        if (res.status < 500) return;
      } catch {
        this.counters.httpErrors++;
      }
      // The server was away: press Queue again a little later, as a person would.
      this.counters.submitRetries++;
      await this.sleep(this.rng.between(3000, 8000));
      if (this.stopping) return;
    }
  }

  private async cancelOne(): Promise<void> {
    const open = [...this.jobs.values()].filter((j) => !j.learned && !j.cancelAsked);
    if (open.length === 0) return;
    const job = this.rng.pick(open);
    job.cancelAsked = true;
    this.counters.cancels++;
    try {
      // The frontend deletes a pending item from the queue, or interrupts the running one.
      if (this.rng.chance(0.5)) await this.post(`/${this.name}/api/queue`, { delete: [job.id] });
      else await this.post(`/${this.name}/api/interrupt`, { prompt_id: job.id });
    } catch {
      this.counters.httpErrors++;
    }
  }

  private async upload(): Promise<string | null> {
    const img = solidImage(32, 32, 1, this.rng.int(0, 0xffffff));
    const png = encodeRgbPng(img.frames[0]!, 32, 32);
    const form = new FormData();
    form.append(
      'image',
      new Blob([new Uint8Array(png)], { type: 'image/png' }),
      `pic-${this.uploads.length}.png`,
    );
    form.append('type', 'input');
    form.append('overwrite', 'false');
    try {
      const res = await this.request('POST', `/${this.name}/api/upload/image`, { form });
      if (res.status !== 200) {
        this.counters.uploadErrors++;
        return null;
      }
      this.counters.uploads++;
      const r = res.json as { name: string; subfolder?: string };
      const name = r.subfolder ? `${r.subfolder}/${r.name}` : r.name;
      this.uploads.push(name);
      return name;
    } catch {
      this.counters.uploadErrors++;
      this.counters.httpErrors++;
      return null;
    }
  }
}
