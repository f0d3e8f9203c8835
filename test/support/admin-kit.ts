/**
 * Helpers for the dashboard's tests (not used by the server): a fresh control plane for each test
 * with an instructor (teacher) and two participants, signing in like a browser, and every action
 * endpoint with a valid body.
 */
import { afterEach, beforeEach, expect } from 'vitest';
import type WebSocket from 'ws';
import { API_TOKEN, PROMPT, startControlPlane, type ControlPlane, type TestAgent } from './worker-hub-kit.js';
import type { Job } from '../../src/store/types.js';
import { CSRF_HEADER } from '../../src/admin/csrf.js';
import type { AuditEntry } from '../../src/admin/view-types.js';

export const TEACHER_PW = 'teacher-password-0123';
export const ALICE_PW = 'alice-password-0123';

export const basic = (user: string, pw: string) => `Basic ${Buffer.from(`${user}:${pw}`).toString('base64')}`;

/** Every action endpoint, with a body that is valid (the targets may not exist). */
export function actions(
  jobId = 'no-such-job',
  workerId = 'envgpu:gpu1',
): { url: string; payload: unknown }[] {
  return [
    { url: `/admin/api/jobs/${jobId}/cancel`, payload: {} },
    { url: `/admin/api/jobs/${jobId}/front`, payload: {} },
    { url: `/admin/api/jobs/${jobId}/priority`, payload: { priority: 'high' } },
    { url: '/admin/api/queue/mode', payload: { mode: 'fifo' } },
    { url: '/admin/api/queue/pause', payload: { paused: true } },
    { url: '/admin/api/queue/limits', payload: { maxPendingPerUser: 5 } },
    { url: '/admin/api/users/bob/limits', payload: { maxPendingPerUser: 2 } },
    { url: '/admin/api/users/bob/reset-password', payload: {} },
    { url: `/admin/api/workers/${workerId}/drain`, payload: { draining: true } },
    { url: '/admin/api/broadcast', payload: { message: 'hello' } },
    { url: '/admin/api/alerts/test', payload: {} },
  ];
}

export interface AdminKit {
  /** Agents and sockets a test opened; closed after it. */
  agents: TestAgent[];
  sockets: WebSocket[];
  /** Signs in through `/login` like a browser; returns the session cookie value. */
  login(user: string, password: string): Promise<string>;
  /** A signed-in instructor's browser: session cookie and CSRF token from /admin/api/me. */
  instructorSession(): Promise<{ cookie: string; csrf: string }>;
  enqueue(user?: string, metadata?: Record<string, unknown>): Promise<Job>;
  auditEntries(): Promise<AuditEntry[]>;
}

/**
 * Starts a control plane before each test of the calling file, hands it to `started` (the tests
 * use it directly) and closes it after, with the agents and sockets the test opened.
 */
export function adminControlPlane(started: (cp: ControlPlane) => void): AdminKit {
  let cp: ControlPlane;
  const agents: TestAgent[] = [];
  const sockets: WebSocket[] = [];

  beforeEach(async () => {
    cp = await startControlPlane({ MAX_RUNNING_PER_USER: '1' });
    started(cp);
    await cp.services.accounts.create('teacher', 'instructor', TEACHER_PW);
    await cp.services.accounts.create('alice', 'participant', ALICE_PW);
    await cp.services.accounts.create('bob', 'participant', 'bob-password-0123');
  });

  afterEach(async () => {
    for (const s of sockets.splice(0)) s.terminate();
    for (const a of agents.splice(0)) await a.close();
    await cp.close();
  });

  /** Signs in through `/login` like a browser; returns the session cookie value. */
  async function login(user: string, password: string): Promise<string> {
    const res = await cp.app.inject({ method: 'POST', url: '/login', payload: { user, password } });
    expect(res.statusCode).toBe(200);
    return res.cookies.find((c) => c.name === 'cm_session')!.value;
  }

  /** A signed-in instructor's browser: session cookie and CSRF token from /admin/api/me. */
  async function instructorSession(): Promise<{ cookie: string; csrf: string }> {
    const cookie = await login('teacher', TEACHER_PW);
    const me = await cp.app.inject({ url: '/admin/api/me', cookies: { cm_session: cookie } });
    expect(me.statusCode).toBe(200);
    expect(me.json()).toMatchObject({ user: 'teacher', role: 'instructor', csrfHeader: CSRF_HEADER });
    return { cookie, csrf: me.json().csrfToken as string };
  }

  async function enqueue(user = 'alice', metadata: Record<string, unknown> = {}): Promise<Job> {
    return cp.services.queue.enqueue({ user, prompt: PROMPT, metadata });
  }

  async function auditEntries(): Promise<AuditEntry[]> {
    const res = await cp.app.inject({
      url: '/admin/api/audit?limit=200',
      headers: { authorization: `Bearer ${API_TOKEN}` },
    });
    expect(res.statusCode).toBe(200);
    return res.json().entries as AuditEntry[];
  }

  return { agents, sockets, login, instructorSession, enqueue, auditEntries };
}
