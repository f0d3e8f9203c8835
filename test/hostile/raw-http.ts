/**
 * A tiny HTTP/1.1 client over a bare TCP socket: whatever path, header or byte sequence a case
 * names goes out exactly as written (fetch and node:http normalise or refuse most hostile ones).
 * Every request says `Connection: close`, so the answer ends when the server closes.
 */
import { connect, type Socket } from 'node:net';
import type { HttpResult } from './types.js';

export type Step = string | Buffer | { pause: number } | 'end' | 'destroy';

export interface RawOutcome {
  /** null: the server closed (or we gave up) without a complete status line. */
  result: HttpResult | null;
  closedAfterMs: number;
  timedOut: boolean;
}

/** Writes `steps` to a fresh connection and reads the answer (until close or `timeoutMs`). */
export function rawExchange(port: number, steps: Step[], timeoutMs = 5000): Promise<RawOutcome> {
  return new Promise((resolve) => {
    const started = Date.now();
    const chunks: Buffer[] = [];
    let done = false;
    const finish = (timedOut: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      resolve({
        result: parseResponse(Buffer.concat(chunks)),
        closedAfterMs: Date.now() - started,
        timedOut,
      });
    };
    const timer = setTimeout(() => finish(true), timeoutMs);
    const sock: Socket = connect(port, '127.0.0.1');
    sock.on('data', (c: Buffer) => chunks.push(c));
    sock.on('close', () => finish(false));
    sock.on('error', () => finish(false));
    sock.once('connect', async () => {
      for (const step of steps) {
        if (done || sock.destroyed) return;
        if (step === 'end') sock.end();
        else if (step === 'destroy') return finish(false);
        else if (typeof step === 'object' && !Buffer.isBuffer(step)) {
          await new Promise((r) => setTimeout(r, step.pause));
        } else {
          // A server that already answered and closed makes further writes fail: that is fine.
          await new Promise<void>((r) => sock.write(step, () => r()));
        }
      }
    });
  });
}

/** One request's bytes: request line, headers (plus Host and Connection: close), body. */
export function requestBytes(
  method: string,
  path: string,
  host: string,
  headers: Record<string, string>,
  body?: Buffer,
): Buffer {
  const lower = new Set(Object.keys(headers).map((h) => h.toLowerCase()));
  const lines = [`${method} ${path} HTTP/1.1`];
  if (!lower.has('host')) lines.push(`Host: ${host}`);
  lines.push('Connection: close');
  for (const [k, v] of Object.entries(headers)) lines.push(`${k}: ${v}`);
  if (body && !lower.has('content-length') && !lower.has('transfer-encoding'))
    lines.push(`Content-Length: ${body.length}`);
  return Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1'), body ?? Buffer.alloc(0)]);
}

/** Parses a complete HTTP/1.1 response (Content-Length, chunked or read-until-close). */
export function parseResponse(buf: Buffer): HttpResult | null {
  const end = buf.indexOf('\r\n\r\n');
  if (end < 0) return null;
  const head = buf.subarray(0, end).toString('latin1').split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(head[0] ?? '');
  if (!m) return null;
  const headers: Record<string, string> = {};
  for (const line of head.slice(1)) {
    const i = line.indexOf(':');
    if (i > 0) {
      const k = line.slice(0, i).trim().toLowerCase();
      const v = line.slice(i + 1).trim();
      headers[k] = headers[k] === undefined ? v : `${headers[k]}, ${v}`;
    }
  }
  let body = buf.subarray(end + 4);
  if (/chunked/i.test(headers['transfer-encoding'] ?? '')) body = dechunk(body);
  else if (headers['content-length'] !== undefined)
    body = body.subarray(0, Number(headers['content-length']));
  let json: unknown;
  if (/json/i.test(headers['content-type'] ?? '')) {
    try {
      json = JSON.parse(body.toString('utf8'));
    } catch {
      json = undefined;
    }
  }
  return { status: Number(m[1]), headers, body, json };
}

function dechunk(buf: Buffer): Buffer {
  const out: Buffer[] = [];
  let i = 0;
  while (i < buf.length) {
    const nl = buf.indexOf('\r\n', i);
    if (nl < 0) break;
    const size = parseInt(buf.subarray(i, nl).toString('latin1'), 16);
    if (!Number.isFinite(size) || size === 0) break;
    out.push(buf.subarray(nl + 2, nl + 2 + size));
    i = nl + 2 + size + 2;
  }
  return Buffer.concat(out);
}
