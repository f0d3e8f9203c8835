import type { LiveMessage, MeInfo } from '../../view-types.js';

/** An error the server answered with (`{error: {code, message}}`), or a network failure. */
export class ApiError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

let me: MeInfo | null = null;

function toLogin(): never {
  location.assign(`/login?next=${encodeURIComponent(location.pathname)}`);
  throw new ApiError('UNAUTHORIZED', 'Signed out.', 401);
}

async function errorOf(res: Response): Promise<ApiError> {
  try {
    const body = (await res.json()) as { error?: { code?: string; message?: string } };
    return new ApiError(body.error?.code ?? 'HTTP', body.error?.message ?? res.statusText, res.status);
  } catch {
    return new ApiError('HTTP', `${res.status} ${res.statusText}`, res.status);
  }
}

/** Who is signed in, and the CSRF token the actions need. Sends the browser to /login when signed out. */
export async function loadMe(): Promise<MeInfo> {
  const res = await fetch('/admin/api/me', { credentials: 'same-origin', cache: 'no-store' });
  if (res.status === 401) toLogin();
  if (!res.ok) throw await errorOf(res);
  me = (await res.json()) as MeInfo;
  return me;
}

/** POSTs an action with the CSRF header; resolves with the JSON answer or rejects with an ApiError. */
export async function action<T = unknown>(path: string, body: unknown = {}): Promise<T> {
  const info = me ?? (await loadMe());
  let res: Response;
  try {
    res = await fetch(`/admin/api${path}`, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'content-type': 'application/json', [info.csrfHeader]: info.csrfToken },
      body: JSON.stringify(body),
    });
  } catch {
    throw new ApiError('NETWORK', 'The server cannot be reached. Check the connection and try again.', 0);
  }
  if (res.status === 401) toLogin();
  if (!res.ok) throw await errorOf(res);
  return (await res.json()) as T;
}

export type LiveStatus = 'connecting' | 'live' | 'reconnecting';

/**
 * The live stream: one WebSocket to /admin/api/live, reopened with backoff when it drops. Each
 * (re)connect starts with a `hello` holding the whole state, so nothing is missed while away.
 */
export function connectLive(
  onMessage: (m: LiveMessage) => void,
  onStatus: (s: LiveStatus) => void,
): () => void {
  let socket: WebSocket | null = null;
  let attempt = 0;
  let timer: number | undefined;
  let stopped = false;

  const open = () => {
    if (stopped) return;
    onStatus(attempt === 0 ? 'connecting' : 'reconnecting');
    const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/admin/api/live`;
    const ws = new WebSocket(url);
    socket = ws;
    ws.onmessage = (ev) => {
      if (typeof ev.data !== 'string') return;
      let msg: LiveMessage;
      try {
        msg = JSON.parse(ev.data) as LiveMessage;
      } catch {
        return;
      }
      if (msg.type === 'hello') {
        attempt = 0;
        onStatus('live');
      }
      onMessage(msg);
    };
    ws.onclose = () => {
      if (stopped) return;
      socket = null;
      attempt += 1;
      onStatus('reconnecting');
      // A refused upgrade may mean the session ended: find out, and go to the login page if so.
      if (attempt > 1) void loadMe().catch(() => {});
      const delay = Math.min(10_000, 400 * 2 ** Math.min(attempt - 1, 5)) * (0.8 + Math.random() * 0.4);
      timer = window.setTimeout(open, delay);
    };
  };
  open();
  return () => {
    stopped = true;
    window.clearTimeout(timer);
    socket?.close();
  };
}

/**
 * Calls the instructor REST API `/api/v1` with the dashboard's session (same origin, so its writes
 * pass the origin check; the CSRF header goes along too). Resolves with the JSON answer.
 */
export async function v1<T = unknown>(
  method: 'GET' | 'POST' | 'PUT' | 'DELETE',
  path: string,
  body?: unknown,
): Promise<T> {
  const info = me ?? (await loadMe());
  let res: Response;
  try {
    res = await fetch(`/api/v1${path}`, {
      method,
      credentials: 'same-origin',
      cache: 'no-store',
      headers: {
        ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
        [info.csrfHeader]: info.csrfToken,
      },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
  } catch {
    throw new ApiError('NETWORK', 'The server cannot be reached. Check the connection and try again.', 0);
  }
  if (res.status === 401) toLogin();
  if (!res.ok) throw await errorOf(res);
  return (await res.json()) as T;
}
