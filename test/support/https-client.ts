/**
 * HTTP(S) requests and WebSockets for end-to-end tests that trust a test CA explicitly (never
 * `rejectUnauthorized: false`), one fresh connection per request so the certificate seen is the
 * one the server presents now.
 */
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { TLSSocket } from 'node:tls';
import { spawn } from 'node:child_process';
import WebSocket from 'ws';

export interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  /** Serial number of the server certificate (https only). */
  serial?: string;
}

export interface SendOptions {
  method?: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
  /** CA certificate(s) to trust for https. */
  ca?: string;
}

export function send(url: string, opts: SendOptions = {}): Promise<Answer> {
  const u = new URL(url);
  const https = u.protocol === 'https:';
  const request = https ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = request(
      u,
      {
        method: opts.method ?? 'GET',
        headers: opts.headers ?? {},
        agent: false,
        ...(https ? { ca: opts.ca, servername: 'localhost' } : {}),
      },
      (res) => {
        const chunks: Buffer[] = [];
        const serial = https ? (res.socket as TLSSocket).getPeerCertificate().serialNumber : undefined;
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode!,
            headers: res.headers,
            body: Buffer.concat(chunks),
            ...(serial ? { serial: serial.toUpperCase() } : {}),
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** Opens a WebSocket (ws: or wss:) and resolves once it is open. */
export function openSocket(
  url: string,
  opts: { ca?: string; headers?: Record<string, string> } = {},
): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, {
      headers: opts.headers ?? {},
      ...(opts.ca ? { ca: opts.ca, servername: 'localhost' } : {}),
    });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) =>
      reject(new Error(`WebSocket upgrade refused: ${res.statusCode}`)),
    );
  });
}

/** Resolves with the next text message on `ws` (parsed JSON). */
export function nextMessage(ws: WebSocket): Promise<{ type: string; data?: unknown }> {
  return new Promise((resolve, reject) => {
    const onMessage = (data: WebSocket.RawData, binary: boolean) => {
      if (binary) return;
      ws.off('message', onMessage);
      resolve(JSON.parse(data.toString()) as { type: string });
    };
    ws.on('message', onMessage);
    ws.once('close', () => reject(new Error('socket closed')));
  });
}

/** A ping answered by a pong: the connection (TLS session included) is still alive. */
export function pingPong(ws: WebSocket): Promise<void> {
  return new Promise((resolve, reject) => {
    ws.once('pong', () => resolve());
    ws.once('close', () => reject(new Error('socket closed')));
    ws.ping();
  });
}

export interface Finished {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to its end, keeping stdout and stderr apart. */
export function runToEnd(
  command: string,
  args: string[],
  opts: { cwd: string; env: Record<string, string>; uid?: number; gid?: number; timeoutMs?: number },
): Promise<Finished> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: opts.cwd,
      env: { ...process.env, ...opts.env, NODE_ENV: 'test' },
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(opts.uid !== undefined ? { uid: opts.uid, gid: opts.gid ?? opts.uid } : {}),
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    // A command that should have ended but did not (e.g. a server that started after all) is
    // killed, so no test leaks a process; its exit code is then null.
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 30_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
