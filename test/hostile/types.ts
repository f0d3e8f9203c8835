/**
 * The shape of the hostile-input corpus (test/hostile/cases/*.ts). Each case is data: what to send,
 * as whom, and what a careful server answers. Values that only exist at run time (job ids, session
 * cookies, tokens) are reached through the {@link Ctx} passed to functions.
 */
import type { ErrorCode } from '../../src/errors.js';

/** Who sends the request. Sessions are cookies made by `POST /login`; Basic goes through the throttle. */
export type Actor =
  | 'anon'
  | 'alice' // participant, session cookie
  | 'aliceBasic' // participant, HTTP Basic
  | 'bob' // participant, session cookie
  | 'admin' // instructor, session cookie
  | 'adminBasic' // instructor, HTTP Basic
  | 'api' // Bearer API token (instructor rights)
  | 'worker' // Bearer worker token
  | 'revokedWorker' // Bearer worker token that was revoked before the run
  | 'liveWorker'; // Bearer worker token that a case revokes while its socket is open

/** What the run learned while setting up; every case may read it. */
export interface Ctx {
  base: string;
  host: string;
  port: number;
  /** Jobs queued before the run (pending: no healthy worker); `carol` owns them, `alice` one too. */
  jobs: { carol: string[]; alice: string[] };
  /** A file alice uploaded before the run (input area). */
  aliceFile: string;
  /** Header values (`cookie` / `authorization`) of each actor. */
  headers(actor: Actor): Record<string, string>;
  /** The dashboard CSRF token of the admin session. */
  adminCsrf: string;
  passwords: Record<string, string>;
  /** Fresh session cookie of a throwaway account (`erin`), made on demand (logout cases). */
  freshSession(user: 'erin'): Promise<string>;
  tokens: { worker: string; revoked: string; live: string; api: string; metrics: string };
  /**
   * A `cookie` header holding a correctly signed session made from alice's claims after `change`
   * (expired, another password version, another user): the signature alone must not be enough.
   */
  signedSession(change: (claims: Record<string, unknown>) => Record<string, unknown>): string;
  /** Revokes a worker token through the CLI (another process, as an instructor would). */
  revokeToken(name: string): Promise<void>;
  /** Values one case leaves for a later one in a serial family (e.g. a cookie from before a logout). */
  vars: Record<string, string>;
}

type Dyn<T> = T | ((ctx: Ctx) => T);

/** What a careful server answers. */
export interface Expect {
  status: number;
  /** Our error table's code: the body is `{error: {code, message}}`. */
  code?: ErrorCode;
  /** ComfyUI's `POST /prompt` error body: `{error: {type, ...}, node_errors}`, this `type`. */
  comfy?: string;
  /** A `text/plain` body, as ComfyUI's userdata routes answer errors. */
  text?: string;
  /** ComfyUI's `{error: "<string>"}` bodies (`/api/jobs`, `/internal/files`): a fragment of it. */
  errorText?: string;
  /** `Location` of a redirect must equal this. */
  location?: string;
  /** Extra check of the response; returns a complaint, or null when fine. */
  check?: (res: HttpResult, ctx: Ctx) => string | null;
  /**
   * This case's 5xx is the designed answer (a status endpoint reporting "unhealthy"); without it,
   * any 5xx breaks the run's invariant.
   */
  designed5xx?: string;
}

export interface HttpResult {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
  /** The body parsed as JSON, when it is JSON. */
  json: unknown;
}

interface Base {
  /** Unique within the corpus; says what is sent and why it is hostile. */
  name: string;
  /**
   * A fix that has not landed yet: the runner does not send this case, and prints the reason.
   * Keep this list short; remove the field as soon as the fix is merged.
   */
  knownIssue?: string;
  /** Runs before the case is sent (serial families only: sets up `ctx.vars`). */
  prepare?: (ctx: Ctx) => Promise<void>;
}

/** An ordinary HTTP request (sent over a raw socket, so any path and header goes out verbatim). */
export interface HttpCase extends Base {
  kind?: 'http';
  as?: Actor;
  method: string;
  /** Sent exactly as written: no normalisation of `..`, `%2e` or `//`. */
  path: Dyn<string>;
  headers?: Dyn<Record<string, string>>;
  /** An object is sent as JSON (content-type application/json unless headers say otherwise). */
  body?: Dyn<string | Buffer | object>;
  expect: Expect;
}

/** Bytes written to a socket in steps (truncated, slow, malformed requests); answer read as HTTP. */
export interface RawCase extends Base {
  kind: 'raw';
  as?: Actor;
  /** Each step: bytes to write, or a pause in ms; `end` half-closes, `destroy` drops the connection. */
  steps: Dyn<(string | Buffer | { pause: number } | 'end' | 'destroy')[]>;
  /** A status, or `'closed'`: the server must hang up without answering (or the client gave up). */
  expect: Expect | { closed: true; withinMs: number };
  /** How long to wait for an answer. Default 5,000 ms. */
  timeoutMs?: number;
}

/** A WebSocket upgrade, then optional frames; the outcome is the refusal status or the close code. */
export interface WsCase extends Base {
  kind: 'ws';
  as?: Actor;
  path: Dyn<string>;
  headers?: Dyn<Record<string, string>>;
  /** Frames to send after the socket opened: text, binary, or raw bytes written under the ws layer. */
  send?: Dyn<
    (
      | { text: string }
      | { binary: Buffer }
      | { raw: Buffer }
      | { pause: number }
      | { act: (ctx: Ctx) => Promise<void> }
    )[]
  >;
  expect:
    | { refused: number; code?: ErrorCode }
    | { open: true; firstMessageType?: string }
    /** The close code the client sees; 1006 (no close frame) when the server drops a socket mid-frame. */
    /** The close code the client sees; 1006 (no close frame) when the server drops a socket mid-frame. */
    | { closeCode: number | number[]; withinMs?: number }
    | { errorMessage: string };
}

export type Case = HttpCase | RawCase | WsCase;

export interface Family {
  /** Route family, as in the corpus README. */
  family: string;
  cases: Case[];
  /** Run the cases one after another (their order matters); otherwise several at once. */
  serial?: boolean;
}

export const dyn = <T>(v: Dyn<T>, ctx: Ctx): T => (typeof v === 'function' ? (v as (c: Ctx) => T)(ctx) : v);
