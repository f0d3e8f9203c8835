/**
 * WebSocket hardening (issue 10): a participant's `/ws` refuses cross-site upgrades like the
 * dashboard's socket, and browser sockets take small messages only, while a worker agent can still
 * send its (large) environment snapshot.
 */
import type { FastifyRequest } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { testSnapshot } from '../../test/support/gateway-kit.js';
import { getCurrentEnv } from '../dispatch/env-snapshots.js';
import { envHashOf } from '../dispatch/worker-hub.js';
import {
  API_TOKEN,
  TestAgent,
  startControlPlane,
  type ControlPlane,
} from '../../test/support/worker-hub-kit.js';
import { checkSameOrigin } from './same-origin.js';
import { BROWSER_WS_MAX_PAYLOAD, wsMaxPayload } from './ws-limits.js';

let cp: ControlPlane;
let alice: string;

beforeAll(async () => {
  cp = await startControlPlane();
  await cp.services.accounts.create('alice', 'participant', 'alice-password-0123');
  alice = `Basic ${Buffer.from('alice:alice-password-0123').toString('base64')}`;
}, 60_000);

afterAll(async () => {
  await cp.close();
});

const wsBase = () => cp.url.replace('http', 'ws');

/** Opens a socket; resolves with the HTTP status of a refused upgrade, or the open socket. */
function open(path: string, headers: Record<string, string>): Promise<number | WebSocket> {
  const ws = new WebSocket(`${wsBase()}${path}`, { headers });
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve(ws));
    ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
    ws.once('error', reject);
  });
}

async function openOk(path: string, headers: Record<string, string>): Promise<WebSocket> {
  const ws = await open(path, headers);
  if (typeof ws === 'number') throw new Error(`upgrade refused: ${ws}`);
  return ws;
}

const closeCode = (ws: WebSocket) =>
  new Promise<number>((resolve) =>
    ws.readyState === WebSocket.CLOSED ? resolve(-1) : ws.once('close', (code) => resolve(code)),
  );

describe("a participant's /ws", () => {
  it('refuses cross-site upgrades, allows same-site ones and clients that send no Origin', async () => {
    for (const path of ['/alice/ws?clientId=c1', '/alice/api/ws?clientId=c1']) {
      expect(await open(path, { authorization: alice, origin: 'https://evil.example' })).toBe(403);
      expect(await open(path, { authorization: alice, origin: 'null' })).toBe(403);
      const same = await openOk(path, { authorization: alice, origin: cp.url });
      same.close();
      const script = await openOk(path, { authorization: alice });
      script.close();
    }
  });

  it(`closes the socket (1009) on a message over ${BROWSER_WS_MAX_PAYLOAD / 1024} kB, keeps small ones`, async () => {
    const ws = await openOk('/alice/ws?clientId=c2', { authorization: alice });
    ws.on('error', () => {});
    ws.send(JSON.stringify({ type: 'feature_flags', data: { supports_preview_metadata: true } }));
    ws.send(Buffer.alloc(BROWSER_WS_MAX_PAYLOAD + 1, 0x61).toString());
    expect(await closeCode(ws)).toBe(1009);
  });
});

describe("the dashboard's live socket", () => {
  it('takes small messages only', async () => {
    const ws = await openOk('/admin/api/live', { authorization: `Bearer ${API_TOKEN}` });
    ws.on('error', () => {});
    ws.send(Buffer.alloc(BROWSER_WS_MAX_PAYLOAD + 1, 0x61));
    expect(await closeCode(ws)).toBe(1009);
  });
});

describe("a worker's socket", () => {
  it('still takes an environment snapshot far larger than a browser may send', async () => {
    const token = await cp.token('gpu-big');
    const snapshot = testSnapshot();
    // Custom nodes make object_info several MB; pad the recorded one to about 3 MB.
    snapshot.objectInfo = { ...snapshot.objectInfo };
    for (let i = 0; i < 60; i++)
      snapshot.objectInfo[`PaddingNode${i}`] = { description: 'x'.repeat(50_000) } as unknown;
    const hash = envHashOf(snapshot);
    const { agent } = await TestAgent.register(cp.wsUrl, token, { envHash: hash });
    agent.send({ type: 'env', hash, snapshot });
    for (let i = 0; i < 100 && (await getCurrentEnv(cp.store))?.hash !== hash; i++)
      await new Promise((r) => setTimeout(r, 50));
    expect((await getCurrentEnv(cp.store))?.hash).toBe(hash);
    expect(agent.closeCode).toBeNull();
    await agent.close();
  });

  it('the limit is chosen by path', () => {
    expect(wsMaxPayload('/worker/v1/ws', 1234)).toBe(1234);
    expect(wsMaxPayload('/alice/ws', 1234)).toBe(BROWSER_WS_MAX_PAYLOAD);
    expect(wsMaxPayload('/admin/api/live', 1234)).toBe(BROWSER_WS_MAX_PAYLOAD);
  });
});

describe('checkSameOrigin', () => {
  const req = (origin: string | undefined, host = 'ws.internal:8080') =>
    ({ headers: origin === undefined ? {} : { origin }, host }) as unknown as FastifyRequest;
  it('accepts the request host and PUBLIC_URL, refuses others', () => {
    expect(() => checkSameOrigin(req(undefined))).not.toThrow();
    expect(() => checkSameOrigin(req('http://ws.internal:8080'))).not.toThrow();
    expect(() => checkSameOrigin(req('https://workshop.example'), 'https://workshop.example/')).not.toThrow();
    expect(() => checkSameOrigin(req('https://workshop.example'))).toThrow(/Cross-site/);
    expect(() => checkSameOrigin(req('https://evil.example'), 'https://workshop.example')).toThrow();
  });
});
