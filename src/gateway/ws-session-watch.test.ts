import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { SIGNED_OUT_CLOSE, WsSessionWatch } from './ws-session-watch.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

/** A real socket pair on loopback: the server's end (watched) and the browser's end. */
async function pair(): Promise<{ server: WebSocket; client: WebSocket }> {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  cleanups.push(() => new Promise((r) => wss.close(r)));
  await once(wss, 'listening');
  const client = new WebSocket(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}`);
  cleanups.push(() => client.terminate());
  const [server] = (await once(wss, 'connection')) as [WebSocket];
  await once(client, 'open');
  return { server, client };
}

describe('WsSessionWatch', () => {
  it('closes a socket once its session has ended, and keeps the others', async () => {
    const watch = new WsSessionWatch(60_000);
    cleanups.push(() => watch.close());
    const a = await pair();
    const b = await pair();
    let aSignedIn = true;
    watch.add(a.server, async () => aSignedIn);
    watch.add(b.server, async () => true);

    await watch.checkAll();
    expect(a.client.readyState).toBe(WebSocket.OPEN);

    aSignedIn = false; // logged out, reset or removed
    const closed = once(a.client, 'close');
    await watch.checkAll();
    const [code, reason] = (await closed) as [number, Buffer];
    expect(code).toBe(SIGNED_OUT_CLOSE);
    expect(reason.toString()).toBe('signed out');
    expect(b.client.readyState).toBe(WebSocket.OPEN);
  });

  it('keeps sockets open while the store cannot say', async () => {
    const watch = new WsSessionWatch(60_000);
    cleanups.push(() => watch.close());
    const a = await pair();
    watch.add(a.server, async () => {
      throw new Error('store unreachable');
    });
    await watch.checkAll();
    expect(a.client.readyState).toBe(WebSocket.OPEN);
  });
});
