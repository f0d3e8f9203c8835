/**
 * What a process does when it is told to stop (a rolling restart): `/health` and `/ready` say
 * draining (503 SHUTTING_DOWN, JSON), every WebSocket is closed with 1012 "service restart" (the
 * ComfyUI frontend and the worker agent reconnect on it, through the load balancer, to another
 * process), new connections are refused, and a request already in flight still finishes.
 */
import { Agent, request as httpRequest } from 'node:http';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { markDraining } from './health-routes.js';
import { holdIdleConnections } from '../main.js';
import { CLOSE_SERVICE_RESTART } from '../worker/protocol.js';
import { listen, startHarness, type Harness } from '../../test/support/gateway-kit.js';

const WORKER_TOKEN = 'drain-test-worker-token-0123456789';
let h: Harness;
let base: string;
let alice: string;
let closed = false;

beforeEach(async () => {
  closed = false;
  h = await startHarness({ WORKER_TOKENS: `gpu:${WORKER_TOKEN}` });
  alice = await h.addUser('user001');
  base = await listen(h);
});
afterEach(async () => {
  if (!closed) await h.close();
  else await h.services.store.close().catch(() => undefined);
});

function openWs(url: string, headers: Record<string, string>): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

const closeCode = (ws: WebSocket) =>
  new Promise<number>((resolve) => ws.once('close', (code: number) => resolve(code)));

describe('draining on shutdown', () => {
  it('/health and /ready answer 503 SHUTTING_DOWN once draining', async () => {
    expect((await h.app.inject({ method: 'GET', url: '/health' })).statusCode).toBe(200);
    markDraining(h.app);
    for (const url of ['/health', '/ready']) {
      const res = await h.app.inject({ method: 'GET', url });
      expect(res.statusCode).toBe(503);
      expect(res.headers['retry-after']).toBe('1');
      expect(res.json()).toMatchObject({ error: { code: 'SHUTTING_DOWN', details: { status: 'draining' } } });
    }
    // A WebSocket upgrade that still reaches it gets the same 503 (the load balancer tries the next
    // process), not the 404 it got once the upgrade listener was gone; other requests are served.
    const upgrade = await h.app.inject({
      method: 'GET',
      url: '/user001/ws?clientId=abc',
      headers: { connection: 'upgrade', upgrade: 'websocket' },
    });
    expect(upgrade.statusCode).toBe(503);
    expect(upgrade.json()).toMatchObject({ error: { code: 'SHUTTING_DOWN' } });
    expect((await h.app.inject({ method: 'GET', url: '/login' })).statusCode).not.toBe(503);
  });

  it('closes participant and worker sockets with 1012, refuses new connections, finishes requests in flight', async () => {
    const wsBase = base.replace('http', 'ws');
    const participant = await openWs(`${wsBase}/user001/ws?clientId=drain1`, { authorization: alice });
    const worker = await openWs(`${wsBase}/worker/v1/ws`, { authorization: `Bearer ${WORKER_TOKEN}` });
    const participantClosed = closeCode(participant);
    const workerClosed = closeCode(worker);

    // A userdata upload whose body is still arriving when the process is told to stop.
    const body = JSON.stringify({ nodes: [], note: 'saved across a restart' });
    const { port } = new URL(base);
    const inFlight = new Promise<{ status: number; text: string; connection: string | undefined }>(
      (resolve, reject) => {
        const req = httpRequest(
          {
            host: '127.0.0.1',
            port,
            method: 'POST',
            path: '/user001/api/userdata/workflows%2Fdrain.json?overwrite=true',
            headers: {
              authorization: alice,
              'content-type': 'application/json',
              'content-length': String(Buffer.byteLength(body)),
            },
          },
          (res) => {
            let text = '';
            res.on('data', (c: Buffer) => (text += c.toString()));
            res.on('end', () =>
              resolve({ status: res.statusCode ?? 0, text, connection: res.headers.connection }),
            );
          },
        );
        req.on('error', reject);
        req.write(body.slice(0, 10));
        setTimeout(() => req.end(body.slice(10)), 400);
      },
    );
    await new Promise((r) => setTimeout(r, 100));

    closed = true;
    h.services.queue.stop();
    const closing = h.app.close();
    expect(await participantClosed).toBe(CLOSE_SERVICE_RESTART);
    expect(await workerClosed).toBe(CLOSE_SERVICE_RESTART);
    // The listening socket is gone: a load balancer's connect fails and it tries the next process.
    await expect(fetch(`${base}/health`)).rejects.toThrow();
    const res = await inFlight;
    expect(res.status, res.text).toBe(200);
    // Its connection ends with it, so close() need not wait for an idle keep-alive to time out.
    expect(res.connection).toBe('close');
    await closing;
  });

  it('in a cluster, leaves an idle keep-alive connection to the load balancer and serves a request on it', async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const { port } = new URL(base);
    const get = (path: string) =>
      new Promise<{ status: number; connection: string | undefined; socket: unknown }>((resolve, reject) => {
        const req = httpRequest(
          { host: '127.0.0.1', port, path, agent, headers: { authorization: alice } },
          (res) => {
            res.resume();
            res.on('end', () =>
              resolve({
                status: res.statusCode ?? 0,
                connection: res.headers.connection,
                socket: req.socket,
              }),
            );
          },
        );
        req.on('error', reject);
        req.end();
      });
    const first = await get('/user001/api/queue');
    expect(first.connection).toBe('keep-alive');

    closed = true;
    h.services.queue.stop();
    markDraining(h.app);
    const release = holdIdleConnections(h.app, 10_000);
    const closing = h.app.close();
    // The idle connection was not closed under the load balancer's feet: the next request on the
    // same socket is served, and says the connection ends with it.
    const second = await get('/user001/api/queue');
    expect(second.socket).toBe(first.socket);
    expect(second.status).toBe(200);
    expect(second.connection).toBe('close');
    release();
    await closing;
    agent.destroy();
  });
});
