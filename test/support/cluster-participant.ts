/**
 * A participant's browser tab as the cluster tests and the cluster bench see it: one session cookie
 * (from `POST /login`, kept for the whole run), one `/ws` with a fixed clientId that reconnects
 * 300 ms after any close as the ComfyUI frontend does (src/scripts/api.ts of ComfyUI_frontend),
 * and `POST /prompt` with a prompt_id chosen by the client, so a request that failed in transit
 * (a process killed mid-answer) can be sent again without queueing the job twice.
 *
 * It records every event naming a prompt_id (with its arrival time), every request that failed,
 * and every time the session was refused (a lost session).
 */
import { randomUUID } from 'node:crypto';
import WebSocket from 'ws';

export interface ReceivedEvent {
  type: string;
  promptId: string;
  node: string | null;
  at: number;
  /** Which of the participant's socket connections it came on (1 = the first). */
  conn: number;
  /** ComfyUI's `timestamp`, when the event has one (a made-up ending has its own). */
  ts?: number;
}

export interface FailedRequest {
  what: string;
  status: number | string;
  at: number;
}

export interface SubmitResult {
  id: string;
  /** Requests it took (1 = accepted at once). */
  tries: number;
  /** The last try was answered "prompt_id is already in use": an earlier try had been accepted. */
  acceptedEarlier: boolean;
}

const RETRYABLE = new Set([502, 503, 504]);
const TIMEOUT_MS = 20_000;

export class ClusterParticipant {
  readonly events: ReceivedEvent[] = [];
  readonly failures: FailedRequest[] = [];
  /** Times the session cookie was refused (401) or the /ws upgrade was refused. */
  readonly sessionRefusals: FailedRequest[] = [];
  readonly clientId = randomUUID().replace(/-/g, '');
  wsConnects = 0;
  wsCloses: number[] = [];
  /** When each opened connection (by number, 1 = the first) closed. */
  readonly closedAt = new Map<number, number>();
  cookie = '';
  private ws: WebSocket | null = null;
  private stopped = false;
  private waiters: (() => void)[] = [];

  constructor(
    readonly name: string,
    private readonly password: string,
    private readonly baseUrl: string,
  ) {}

  async login(): Promise<void> {
    for (let i = 0; ; i++) {
      try {
        const res = await fetch(`${this.baseUrl}/login`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ user: this.name, password: this.password }),
          signal: AbortSignal.timeout(TIMEOUT_MS),
        });
        if (res.ok) {
          this.cookie = /^(cm_session=[^;]+)/.exec(res.headers.get('set-cookie') ?? '')![1]!;
          return;
        }
        if (i >= 5) throw new Error(`login of ${this.name} answered ${res.status}`);
      } catch (err) {
        if (i >= 5) throw err;
      }
      await new Promise((r) => setTimeout(r, 500));
    }
  }

  /** Opens the socket; it reconnects after every close until {@link close}. Resolves on first open. */
  connect(): Promise<void> {
    return new Promise((resolve) => {
      const open = () => {
        if (this.stopped) return;
        const url = `${this.baseUrl.replace(/^http/, 'ws')}/${this.name}/ws?clientId=${this.clientId}`;
        const ws = new WebSocket(url, { headers: { cookie: this.cookie }, perMessageDeflate: false });
        this.ws = ws;
        let conn = 0;
        ws.on('open', () => {
          conn = ++this.wsConnects;
          // As the frontend does first: the feature flags (previews with metadata).
          ws.send(JSON.stringify({ type: 'feature_flags', data: { supports_preview_metadata: true } }));
          resolve();
        });
        ws.on('unexpected-response', (_req, res) => {
          const entry = { what: 'ws upgrade', status: res.statusCode ?? 0, at: Date.now() };
          if (res.statusCode === 401 || res.statusCode === 403) this.sessionRefusals.push(entry);
          this.failures.push(entry);
          res.resume();
          ws.terminate();
        });
        ws.on('message', (data, isBinary) => {
          if (isBinary) return;
          this.onText(data.toString());
        });
        ws.on('error', () => undefined);
        ws.on('close', (code) => {
          this.wsCloses.push(code);
          if (conn) this.closedAt.set(conn, Date.now());
          if (this.ws === ws) this.ws = null;
          // The ComfyUI frontend: `setTimeout(() => createSocket(true), 300)` on every close.
          if (!this.stopped) setTimeout(open, 300);
        });
      };
      open();
    });
  }

  private onText(text: string): void {
    let msg: { type?: string; data?: { prompt_id?: string; node?: string | null; timestamp?: number } };
    try {
      msg = JSON.parse(text) as typeof msg;
    } catch {
      return;
    }
    const promptId = msg.data?.prompt_id;
    if (typeof msg.type !== 'string' || typeof promptId !== 'string') return;
    this.events.push({
      type: msg.type,
      promptId,
      node: msg.data?.node ?? null,
      at: Date.now(),
      conn: this.wsConnects,
      ...(typeof msg.data?.timestamp === 'number' ? { ts: msg.data.timestamp } : {}),
    });
    for (const w of this.waiters.splice(0)) w();
  }

  /** Resolves when `check` holds on the events received, or after `timeoutMs` (then false). */
  async waitForEvents(check: (events: ReceivedEvent[]) => boolean, timeoutMs: number): Promise<boolean> {
    const until = Date.now() + timeoutMs;
    while (!check(this.events)) {
      const left = until - Date.now();
      if (left <= 0) return false;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 1000));
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return true;
  }

  /**
   * `POST /<user>/api/prompt` with a prompt_id of our own; a try that failed in transit (network
   * error, 502/503/504) is sent again with the same id, at most `maxTries` times. Every failed try
   * is recorded. Throws when the job was not accepted in the end.
   */
  async submit(prompt: Record<string, unknown>, maxTries = 6): Promise<SubmitResult> {
    const id = randomUUID();
    for (let tries = 1; ; tries++) {
      let status: number | string;
      let body = '';
      try {
        const res = await fetch(`${this.baseUrl}/${this.name}/api/prompt`, {
          method: 'POST',
          headers: { cookie: this.cookie, 'content-type': 'application/json', origin: this.baseUrl },
          body: JSON.stringify({ prompt, client_id: this.clientId, prompt_id: id }),
          signal: AbortSignal.timeout(TIMEOUT_MS),
        });
        status = res.status;
        body = await res.text();
        if (res.ok) return { id, tries, acceptedEarlier: false };
        if (status === 400 && tries > 1 && body.includes('already in use'))
          return { id, tries, acceptedEarlier: true };
      } catch (err) {
        status = (err as Error).name;
      }
      const entry = { what: 'POST /prompt', status, at: Date.now() };
      this.failures.push(entry);
      if (status === 401) this.sessionRefusals.push(entry);
      if ((typeof status === 'number' && !RETRYABLE.has(status)) || tries >= maxTries)
        throw new Error(`${this.name}: POST /prompt answered ${status}: ${body.slice(0, 300)}`);
      await new Promise((r) => setTimeout(r, 200 * tries));
    }
  }

  /** A GET as the frontend makes them (queue, history); failures are recorded, not thrown. */
  async get(path: string): Promise<number | string> {
    try {
      const res = await fetch(`${this.baseUrl}/${this.name}${path}`, {
        headers: { cookie: this.cookie },
        signal: AbortSignal.timeout(TIMEOUT_MS),
      });
      await res.arrayBuffer();
      if (!res.ok) {
        const entry = { what: `GET ${path}`, status: res.status, at: Date.now() };
        this.failures.push(entry);
        if (res.status === 401) this.sessionRefusals.push(entry);
      }
      return res.status;
    } catch (err) {
      this.failures.push({ what: `GET ${path}`, status: (err as Error).name, at: Date.now() });
      return (err as Error).name;
    }
  }

  close(): void {
    this.stopped = true;
    this.ws?.terminate();
    this.ws = null;
  }
}
