/**
 * Sends one corpus case to the live server and compares the answer with the case's expectation.
 */
import WebSocket from 'ws';
import { rawExchange, requestBytes } from './raw-http.js';
import {
  dyn,
  type Case,
  type Ctx,
  type Expect,
  type HttpCase,
  type HttpResult,
  type WsCase,
} from './types.js';

export interface Outcome {
  name: string;
  /** null when the answer matched. */
  complaint: string | null;
  /** The status seen (0: none). */
  status: number;
  /** A 5xx the case did not declare as designed. */
  undeclared5xx: boolean;
}

function bodyBytes(body: HttpCase['body'], ctx: Ctx, headers: Record<string, string>): Buffer | undefined {
  const b = body === undefined ? undefined : dyn(body, ctx);
  if (b === undefined) return undefined;
  if (Buffer.isBuffer(b)) return b;
  if (typeof b === 'string') return Buffer.from(b, 'utf8');
  if (!Object.keys(headers).some((k) => k.toLowerCase() === 'content-type'))
    headers['content-type'] = 'application/json';
  return Buffer.from(JSON.stringify(b), 'utf8');
}

const short = (r: HttpResult) => {
  const t = r.body.subarray(0, 300).toString('utf8').replace(/\s+/g, ' ');
  return `${r.status} ${t}`;
};

/** Compares an HTTP answer with what the case expects; a complaint or null. */
export function compare(res: HttpResult, want: Expect, ctx: Ctx): string | null {
  if (res.status !== want.status) return `expected ${want.status}, got ${short(res)}`;
  const json = res.json as Record<string, unknown> | undefined;
  const err = json?.error as Record<string, unknown> | string | undefined;
  if (want.code !== undefined) {
    const code = typeof err === 'object' && err ? err.code : undefined;
    if (code !== want.code) return `expected code ${want.code}, got ${short(res)}`;
    if (/at .+\.(ts|js):\d+/.test(res.body.toString('utf8'))) return 'the error body holds a stack trace';
  }
  if (want.comfy !== undefined) {
    const type = typeof err === 'object' && err ? err.type : undefined;
    if (type !== want.comfy) return `expected ComfyUI error type ${want.comfy}, got ${short(res)}`;
    if (!json || typeof json.node_errors !== 'object') return 'ComfyUI error body lacks node_errors';
  }
  if (want.text !== undefined && res.body.toString('utf8') !== want.text)
    return `expected text ${JSON.stringify(want.text)}, got ${short(res)}`;
  if (want.errorText !== undefined && (typeof err !== 'string' || !err.includes(want.errorText)))
    return `expected {error: "…${want.errorText}…"}, got ${short(res)}`;
  if (want.location !== undefined && res.headers.location !== want.location)
    return `expected Location ${want.location}, got ${res.headers.location ?? '(none)'}`;
  return want.check ? want.check(res, ctx) : null;
}

async function runHttp(c: HttpCase, ctx: Ctx): Promise<Outcome> {
  const headers = { ...ctx.headers(c.as ?? 'anon'), ...(c.headers ? dyn(c.headers, ctx) : {}) };
  const body = bodyBytes(c.body, ctx, headers);
  const out = await rawExchange(
    ctx.port,
    [requestBytes(c.method, dyn(c.path, ctx), ctx.host, headers, body)],
    20_000,
  );
  if (!out.result) return { name: c.name, complaint: 'no answer', status: 0, undeclared5xx: false };
  const r = out.result;
  return {
    name: c.name,
    complaint: compare(r, c.expect, ctx),
    status: r.status,
    undeclared5xx: r.status >= 500 && !c.expect.designed5xx,
  };
}

async function runRaw(c: Extract<Case, { kind: 'raw' }>, ctx: Ctx): Promise<Outcome> {
  const out = await rawExchange(ctx.port, dyn(c.steps, ctx), c.timeoutMs ?? 5000);
  const status = out.result?.status ?? 0;
  const undeclared5xx = status >= 500 && !('status' in c.expect && c.expect.designed5xx);
  if ('closed' in c.expect) {
    // The server hung up (or answered 408 Request Timeout and hung up) in time.
    const ok = (out.result === null || out.result.status === 408) && !out.timedOut;
    const inTime = out.closedAfterMs <= c.expect.withinMs;
    return {
      name: c.name,
      complaint:
        ok && inTime
          ? null
          : `expected the connection closed within ${c.expect.withinMs} ms; ${
              out.timedOut
                ? 'still open'
                : `got ${out.result ? short(out.result) : 'a close'} after ${out.closedAfterMs} ms`
            }`,
      status,
      undeclared5xx,
    };
  }
  if (!out.result)
    return {
      name: c.name,
      complaint: `no answer (${out.timedOut ? 'timed out' : 'closed'} after ${out.closedAfterMs} ms)`,
      status,
      undeclared5xx,
    };
  return { name: c.name, complaint: compare(out.result, c.expect, ctx), status, undeclared5xx };
}

interface WsResult {
  refused?: HttpResult;
  opened: boolean;
  messages: string[];
  closeCode?: number;
}

function wsExchange(c: WsCase, ctx: Ctx): Promise<WsResult> {
  const url = `${ctx.base.replace('http', 'ws')}${dyn(c.path, ctx)}`;
  const headers = { ...ctx.headers(c.as ?? 'anon'), ...(c.headers ? dyn(c.headers, ctx) : {}) };
  const send = c.send ? dyn(c.send, ctx) : [];
  const waitMs = 'closeCode' in c.expect ? (c.expect.withinMs ?? 4000) : 1500;
  return new Promise((resolve) => {
    const result: WsResult = { opened: false, messages: [] };
    let settled = false;
    const ws = new WebSocket(url, { headers, maxPayload: 256 * 1024 * 1024 });
    const done = () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      ws.terminate();
      resolve(result);
    };
    const timer = setTimeout(done, waitMs + 3000);
    ws.on('unexpected-response', (_req, res) => {
      const chunks: Buffer[] = [];
      res.on('data', (d: Buffer) => chunks.push(d));
      res.on('end', () => {
        const body = Buffer.concat(chunks);
        let json: unknown;
        try {
          json = JSON.parse(body.toString('utf8'));
        } catch {
          json = undefined;
        }
        result.refused = { status: res.statusCode ?? 0, headers: {}, body, json };
        done();
      });
    });
    ws.on('error', () => undefined);
    ws.on('message', (d, isBinary) => {
      if (!isBinary) result.messages.push(String(d));
    });
    ws.on('close', (code) => {
      result.closeCode = code;
      done();
    });
    ws.on('open', async () => {
      result.opened = true;
      for (const f of send) {
        if (ws.readyState !== WebSocket.OPEN) break;
        if ('pause' in f) await new Promise((r) => setTimeout(r, f.pause));
        else if ('act' in f) await f.act(ctx);
        else if ('text' in f) ws.send(f.text);
        else if ('binary' in f) ws.send(f.binary, { binary: true });
        // Raw bytes under the ws layer: malformed frames no library would produce.
        else (ws as unknown as { _socket: import('node:net').Socket })._socket.write(f.raw);
      }
      if ('open' in c.expect) setTimeout(done, 500);
      else if ('errorMessage' in c.expect) setTimeout(done, 1000);
      else setTimeout(done, waitMs);
    });
  });
}

async function runWs(c: WsCase, ctx: Ctx): Promise<Outcome> {
  const r = await wsExchange(c, ctx);
  const e = c.expect;
  const status = r.refused?.status ?? (r.opened ? 101 : 0);
  let complaint: string | null = null;
  if ('refused' in e) {
    if (!r.refused)
      complaint = `expected the upgrade refused with ${e.refused}, but it ${r.opened ? 'opened' : 'failed'}`;
    else complaint = compare(r.refused, { status: e.refused, ...(e.code ? { code: e.code } : {}) }, ctx);
  } else if (r.refused) {
    complaint = `upgrade refused: ${short(r.refused)}`;
  } else if ('open' in e) {
    if (!r.opened) complaint = 'did not open';
    else if (e.firstMessageType) {
      const first = r.messages[0] ? (JSON.parse(r.messages[0]) as { type?: string }).type : undefined;
      if (first !== e.firstMessageType)
        complaint = `first message ${first ?? '(none)'}, expected ${e.firstMessageType}`;
    }
  } else if ('closeCode' in e) {
    const want = Array.isArray(e.closeCode) ? e.closeCode : [e.closeCode];
    if (r.closeCode === undefined || !want.includes(r.closeCode))
      complaint = `expected close ${want.join('/')}, got ${r.closeCode ?? 'still open'}`;
  } else if ('errorMessage' in e) {
    const codes = r.messages.map((m) => JSON.parse(m) as { type?: string; code?: string });
    if (!codes.some((m) => m.type === 'error' && m.code === e.errorMessage))
      complaint = `expected an error message ${e.errorMessage}, got ${r.messages.join(' ').slice(0, 300) || '(none)'}`;
  }
  return { name: c.name, complaint, status, undeclared5xx: status >= 500 };
}

export function runCase(c: Case, ctx: Ctx): Promise<Outcome> {
  if (c.kind === 'raw') return runRaw(c, ctx);
  if (c.kind === 'ws') return runWs(c, ctx);
  return runHttp(c, ctx);
}

/** Runs cases with at most `concurrency` in flight, keeping their order in the result. */
export async function runAll(cases: Case[], ctx: Ctx, concurrency: number): Promise<Outcome[]> {
  const out: Outcome[] = new Array(cases.length);
  let next = 0;
  const worker = async () => {
    while (next < cases.length) {
      const i = next++;
      const c = cases[i]!;
      try {
        out[i] = await runCase(c, ctx);
      } catch (err) {
        out[i] = {
          name: c.name,
          complaint: `the case threw: ${String(err)}`,
          status: 0,
          undeclared5xx: false,
        };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, concurrency) }, worker));
  return out;
}
