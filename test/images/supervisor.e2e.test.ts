/**
 * deploy/gpu/supervisor.mjs, the GPU image's entrypoint, with stand-ins for its two children: a
 * "ComfyUI" (a small HTTP server answering /system_stats, through COMFYUI_COMMAND) and a "worker
 * agent" (through COMFY_MULTI_BIN). Both note their starts and stops in one file. Checks the agent
 * starts only once ComfyUI answers, either is restarted after it dies, and SIGTERM stops the agent
 * before ComfyUI and exits 0.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Processes, waitFor, type Proc } from '../support/processes.js';
import { freePort } from '../support/redis-server.js';

const procs = new Processes();
let dir: string;
let events: string;
let supervisor: Proc;

const FAKE_COMFY = `
import { appendFileSync } from 'node:fs';
import { createServer } from 'node:http';
const [events, port, delayMs] = process.argv.slice(2);
appendFileSync(events, 'comfy start ' + process.pid + '\\n');
// Answers only after a delay, as ComfyUI does while it loads.
setTimeout(() => createServer((req, res) => res.writeHead(req.url === '/system_stats' ? 200 : 404).end('{}'))
  .listen(Number(port), '127.0.0.1', () => appendFileSync(events, 'comfy listening\\n')), Number(delayMs));
process.on('SIGTERM', () => { appendFileSync(events, 'comfy stop\\n'); process.exit(0); });
`;

const FAKE_AGENT = `
import { appendFileSync } from 'node:fs';
const events = process.env.EVENTS_FILE;
appendFileSync(events, 'agent start ' + process.pid + ' ' + process.argv.slice(2).join(' ') + '\\n');
setInterval(() => {}, 1000);
process.on('SIGTERM', () => setTimeout(() => { appendFileSync(events, 'agent stop\\n'); process.exit(0); }, 200));
`;

const lines = () => readFileSync(events, 'utf8').trim().split('\n').filter(Boolean);
const startsOf = (what: string) => lines().filter((l) => l.startsWith(`${what} start`));
const pidOf = (what: string, nth: number) => Number(startsOf(what)[nth]?.split(' ')[2]);
const starts = (what: string) => startsOf(what).length;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cm-supervisor-'));
  events = join(dir, 'events.log');
  writeFileSync(events, '');
  writeFileSync(join(dir, 'fake-comfy.mjs'), FAKE_COMFY);
  writeFileSync(join(dir, 'fake-agent.mjs'), FAKE_AGENT);
  const port = await freePort();
  supervisor = procs.run('supervisor', ['deploy/gpu/supervisor.mjs'], {
    COMFYUI_DIR: dir,
    COMFYUI_PORT: String(port),
    COMFYUI_COMMAND: `exec node fake-comfy.mjs ${events} ${port} 700`,
    COMFY_MULTI_BIN: join(dir, 'fake-agent.mjs'),
    EVENTS_FILE: events,
    WORKER_GRACE_SECONDS: '5',
  });
});

afterAll(async () => {
  await procs.killAll();
  rmSync(dir, { recursive: true, force: true });
});

async function withLogs(fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (err) {
    console.error(procs.logs(), '\n--- events ---\n', readFileSync(events, 'utf8'));
    throw err;
  }
}

describe('GPU image supervisor', () => {
  it('starts ComfyUI, then the agent once ComfyUI answers', () =>
    withLogs(async () => {
      await waitFor(() => starts('agent') === 1, 20_000, 'the agent to start');
      const [first, second, third] = lines();
      expect(first).toMatch(/^comfy start \d+$/);
      expect(second).toBe('comfy listening');
      expect(third).toMatch(/^agent start \d+ worker --comfyui http:\/\/127\.0\.0\.1:\d+$/);
    }));

  it('restarts ComfyUI when it dies, and the agent when it dies', () =>
    withLogs(async () => {
      process.kill(pidOf('comfy', 0), 'SIGKILL');
      await waitFor(() => starts('comfy') === 2, 20_000, 'ComfyUI to be restarted');
      process.kill(pidOf('agent', 0), 'SIGKILL');
      await waitFor(() => starts('agent') === 2, 20_000, 'the agent to be restarted');
    }));

  it('on SIGTERM stops the agent first, then ComfyUI, and exits 0', () =>
    withLogs(async () => {
      // As `docker stop` does through tini: the signal goes to the supervisor alone, which then
      // stops its children in order.
      supervisor.child.kill('SIGTERM');
      expect(await supervisor.exited).toBe(0);
      expect(lines().slice(-2)).toEqual(['agent stop', 'comfy stop']);
      expect(supervisor.log.join('')).toContain('supervisor: stopped');
    }));
});

describe('GPU image supervisor, ephemeral worker (WORKER_EXIT_WHEN_IDLE_SECONDS)', () => {
  it('when the agent leaves after its idle limit (exit 0), stops ComfyUI and exits 0 instead of restarting it', async () => {
    const eDir = mkdtempSync(join(tmpdir(), 'cm-supervisor-idle-'));
    const eEvents = join(eDir, 'events.log');
    writeFileSync(eEvents, '');
    writeFileSync(join(eDir, 'fake-comfy.mjs'), FAKE_COMFY);
    // An agent that "idles out" at once: exits 0 by itself.
    writeFileSync(
      join(eDir, 'fake-agent.mjs'),
      `import { appendFileSync } from 'node:fs';
appendFileSync(process.env.EVENTS_FILE, 'agent start ' + process.pid + ' ' + process.env.WORKER_EXIT_WHEN_IDLE_SECONDS + '\\n');
setTimeout(() => { appendFileSync(process.env.EVENTS_FILE, 'agent idle exit\\n'); process.exit(0); }, 300);
`,
    );
    const port = await freePort();
    const sup = procs.run('supervisor-idle', ['deploy/gpu/supervisor.mjs'], {
      COMFYUI_DIR: eDir,
      COMFYUI_PORT: String(port),
      COMFYUI_COMMAND: `exec node fake-comfy.mjs ${eEvents} ${port} 100`,
      COMFY_MULTI_BIN: join(eDir, 'fake-agent.mjs'),
      EVENTS_FILE: eEvents,
      WORKER_GRACE_SECONDS: '5',
      WORKER_EXIT_WHEN_IDLE_SECONDS: '1',
    });
    try {
      expect(await sup.exited).toBe(0);
      const ev = readFileSync(eEvents, 'utf8').trim().split('\n');
      expect(ev.filter((l) => l.startsWith('agent start'))).toHaveLength(1);
      expect(ev.slice(-2)).toEqual(['agent idle exit', 'comfy stop']);
      expect(sup.log.join('')).toContain('left after its idle limit');
    } finally {
      rmSync(eDir, { recursive: true, force: true });
    }
  }, 30_000);
});
