import { createServer, connect, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { coalescedWrites } from './coalesced-writes.js';

let server: Server | undefined;
const sockets: Socket[] = [];

afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await new Promise((r) => (server ? server.close(r) : r(undefined)));
  server = undefined;
});

/** A connected pair: what the far end receives, as the chunks its reads returned. */
async function pair(): Promise<{ near: Socket; chunks: string[] }> {
  const chunks: string[] = [];
  server = createServer((far) => {
    sockets.push(far);
    far.on('data', (c) => chunks.push(String(c)));
  });
  await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  const near = connect(port, '127.0.0.1');
  sockets.push(near);
  await new Promise((r) => near.once('connect', r));
  return { near, chunks };
}

const turn = () => new Promise((r) => setImmediate(r));

describe('coalesced writes', () => {
  it("holds a turn's writes, its promise continuations' too, and lets them go together in order", async () => {
    const { near, chunks } = await pair();
    const hold = coalescedWrites(near);
    const send = (s: string) => {
      hold();
      near.write(s);
    };
    send('a');
    send('b');
    await Promise.resolve().then(() => send('c'));
    // Still this turn: nothing has left.
    expect(near.writableCorked).toBe(1);
    expect(near.writableLength).toBe(3);
    await turn();
    expect(near.writableCorked).toBe(0);
    send('d');
    await new Promise((r) => setTimeout(r, 50));
    expect(chunks.join('')).toBe('abcd');
    // The held three left in one write, so no read splits them.
    expect(chunks[0]!.startsWith('abc')).toBe(true);
  });

  it('a closed connection or none at all: sending goes on as without it', async () => {
    const { near } = await pair();
    const hold = coalescedWrites(near);
    near.destroy();
    expect(() => hold()).not.toThrow();
    expect(near.writableCorked).toBe(0);
    expect(() => coalescedWrites(undefined)()).not.toThrow();
  });
});
