/**
 * The worker hub's front door: token checks before the upgrade, hello and the env snapshot,
 * bad frames and heartbeats, and the `/api/v1/workers` registry listing.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { EnvSnapshot } from '../worker/protocol.js';
import { getCurrentEnv } from './env-snapshots.js';
import { envHashOf } from './worker-hub.js';
import {
  API_TOKEN,
  ENV_WORKER_TOKEN,
  HubTestBed,
  TestAgent,
  refusedUpgrade,
  sleep,
  until,
} from '../../test/support/worker-hub-kit.js';

const bed = new HubTestBed();
const { start, agent, api, agents, cleanups } = bed;
afterEach(bed.reset);

describe('worker hub: authentication', () => {
  it('accepts a stored token and a WORKER_TOKENS token, and names the worker after both', async () => {
    await start();
    const token = await bed.cp.token('gpu-a');
    const a = await agent(token, { name: 'box1' });
    expect(a.welcome.workerId).toBe('gpu-a:box1');
    const b = await agent(ENV_WORKER_TOKEN, { name: 'box2' });
    expect(b.welcome.workerId).toBe('envgpu:box2');
  });

  it('answers a wrong, revoked or missing token with a plain 401 before any upgrade', async () => {
    await start();
    const token = await bed.cp.token('gpu-a');
    const wrong = await refusedUpgrade(bed.cp.wsUrl, { authorization: 'Bearer not-a-real-token-000000000' });
    await bed.cp.services.workerTokens.revoke('gpu-a');
    const revoked = await refusedUpgrade(bed.cp.wsUrl, { authorization: `Bearer ${token}` });
    expect(wrong.status).toBe(401);
    expect(revoked).toEqual(wrong); // learns nothing: the same answer
    expect(wrong.body).toEqual({ error: { code: 'INVALID_TOKEN', message: expect.any(String) } });
    const missing = await refusedUpgrade(bed.cp.wsUrl, {});
    expect(missing.status).toBe(401);
    // An API (instructor) token is not a worker token.
    expect((await refusedUpgrade(bed.cp.wsUrl, { authorization: `Bearer ${API_TOKEN}` })).status).toBe(401);
    expect(bed.cp.services.hub.connections).toBe(0);
  });
});

describe('worker hub: registration and environment', () => {
  const snapshot: EnvSnapshot = {
    comfyuiVersion: '0.3.64',
    objectInfo: { EmptyImage: { input: { required: {} }, output: ['IMAGE'] } },
    embeddings: ['easynegative'],
    models: { checkpoints: ['flux.safetensors'] },
    extensions: [],
    systemStats: { system: { comfyui_version: '0.3.64' } },
  };
  const hash = envHashOf(snapshot);

  it('asks for the env snapshot only when its hash is new, stores it and makes it current', async () => {
    await start();
    const token = await bed.cp.token('gpu');
    const envChanges: string[] = [];
    cleanups.push(bed.cp.services.bus.onEnv((e) => envChanges.push(e.hash)));

    const first = await agent(token, { envHash: hash });
    expect(first.welcome).toMatchObject({
      type: 'welcome',
      protocol: 1,
      workerId: 'gpu:gpu1',
      leaseMs: bed.cp.config.LEASE_MS,
      heartbeatMs: bed.cp.config.HEARTBEAT_MS,
      needEnv: true,
      forget: [],
    });
    expect(await getCurrentEnv(bed.cp.store)).toBeNull();
    first.agent.send({ type: 'env', hash, snapshot });
    await until(async () => (await getCurrentEnv(bed.cp.store)) !== null, 3000, 'env stored');
    const current = await getCurrentEnv(bed.cp.store);
    expect(current).toMatchObject({ hash, workerId: 'gpu:gpu1', snapshot });
    expect(envChanges).toEqual([hash]);
    await first.agent.close();

    const again = await agent(token, { envHash: hash });
    expect(again.welcome.needEnv).toBe(false);
    expect(envChanges).toEqual([hash]); // unchanged environment, no new event
  });

  it('asks workers for their ComfyUI frontend only when it has none configured', async () => {
    await start();
    const mirroring = await agent(await bed.cp.token('gpu'), { envHash: hash });
    expect(mirroring.welcome.mirrorFrontend).toBe(true);
    await mirroring.agent.close();
    await bed.cp.close();
    const dir = mkdtempSync(join(tmpdir(), 'cm-fe-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(join(dir, 'index.html'), '<!doctype html>');
    await start({ FRONTEND_DIR: dir });
    const fixed = await agent(await bed.cp.token('gpu'), { envHash: hash });
    expect(fixed.welcome.mirrorFrontend).toBe(false);
  });

  it('answers bad frames with an error, and hangs up on a worker that keeps sending garbage', async () => {
    await start();
    const token = await bed.cp.token('gpu');
    const raw = await TestAgent.connect(bed.cp.wsUrl, token);
    agents.push(raw);
    raw.send({ type: 'heartbeat', healthy: true, devices: [], inFlight: [] });
    expect(await raw.next('error')).toMatchObject({ code: 'hello_required' });
    raw.sendRaw('{not json');
    expect(await raw.next('error')).toMatchObject({ code: 'invalid_json' });
    raw.sendRaw(JSON.stringify({ type: 'hello', protocol: 1, name: '' }));
    expect(await raw.next('error')).toMatchObject({ code: 'invalid_message' });
    raw.sendRaw(Buffer.from([9, 9, 9]), true);
    expect(await raw.next('error')).toMatchObject({ code: 'hello_required' });

    // The server is still fine: a proper hello works on this same connection.
    raw.send({
      type: 'hello',
      protocol: 1,
      name: 'gpu1',
      agentVersion: 't',
      comfyuiVersion: 'x',
      devices: [],
      envHash: 'b'.repeat(64),
      prefetch: 0,
      inFlight: [],
      warmModels: [],
      healthy: true,
    });
    expect((await raw.next('welcome')).workerId).toBe('gpu:gpu1');
    for (let i = 0; i < 12; i++) raw.sendRaw(`garbage ${i}`);
    expect(await raw.closed).toBe(4002);
  });

  it('refuses another protocol version with a clear error', async () => {
    await start();
    const raw = await TestAgent.connect(bed.cp.wsUrl, ENV_WORKER_TOKEN);
    agents.push(raw);
    raw.sendRaw(JSON.stringify({ type: 'hello', protocol: 2, name: 'gpu1' }));
    expect(await raw.next('error')).toMatchObject({ code: 'unsupported_protocol' });
    expect(await raw.closed).toBe(4003);
  });

  it('disconnects a worker that stays silent for three heartbeat intervals', async () => {
    await start({ HEARTBEAT_MS: '100', LEASE_MS: '1000' });
    const { agent: a } = await agent(ENV_WORKER_TOKEN);
    const t0 = Date.now();
    expect(await a.closed).toBe(4001);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(200);
    await until(() => bed.cp.services.workers.view('envgpu:gpu1')?.status === 'offline', 2000, 'offline');
  });

  it('keeps a worker that heartbeats', async () => {
    await start({ HEARTBEAT_MS: '100', LEASE_MS: '1000' });
    const { agent: a } = await agent(ENV_WORKER_TOKEN);
    a.heartbeatEvery(50);
    await sleep(600);
    expect(a.closeCode).toBeNull();
    expect(bed.cp.services.workers.view('envgpu:gpu1')?.status).toBe('idle');
  });
});

describe('/api/v1/workers', () => {
  it('is for instructors only', async () => {
    await start();
    expect((await fetch(`${bed.cp.url}/api/v1/workers`)).status).toBe(401);
    await bed.cp.services.accounts.create('pat', 'participant', 'participant-password');
    const basic = `Basic ${Buffer.from('pat:participant-password').toString('base64')}`;
    expect((await fetch(`${bed.cp.url}/api/v1/workers`, { headers: { authorization: basic } })).status).toBe(
      403,
    );
    expect((await api('/api/v1/workers')).status).toBe(200);
    expect((await api('/api/v1/workers/nope/drain', { method: 'POST' })).status).toBe(404);
  });

  it('lists the registry fields', async () => {
    await start();
    await agent(ENV_WORKER_TOKEN, { prefetch: 2, warmModels: ['checkpoints/flux.safetensors'] });
    const body = (await (await api('/api/v1/workers')).json()) as { workers: Record<string, unknown>[] };
    expect(body.workers).toHaveLength(1);
    expect(body.workers[0]).toMatchObject({
      id: 'envgpu:gpu1',
      name: 'gpu1',
      tokenName: 'envgpu',
      status: 'idle',
      connected: true,
      healthy: true,
      draining: false,
      comfyuiVersion: '0.3.64',
      vram: { used: 20e9, total: 80e9 },
      prefetch: 2,
      slots: 3,
      warmModels: ['checkpoints/flux.safetensors'],
      currentJob: null,
      heldJobs: [],
      lastHeartbeatAt: expect.any(String),
    });
    const one = await api('/api/v1/workers/envgpu:gpu1');
    expect(await one.json()).toMatchObject({ id: 'envgpu:gpu1' });
  });
});
