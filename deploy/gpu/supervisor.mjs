#!/usr/bin/env node
// The GPU image's entrypoint (under tini): starts ComfyUI, waits until it answers, then starts the
// comfy-multi worker agent, and restarts either one when it exits (backoff 1 s doubling to 30 s,
// reset after a minute of uptime). With WORKER_EXIT_WHEN_IDLE_SECONDS (an ephemeral worker) an agent
// that exits 0 after its idle limit ends ComfyUI and the supervisor too. On SIGTERM/SIGINT it stops the agent first (which finishes its
// running job within WORKER_GRACE_SECONDS and hands the rest back), then ComfyUI, and exits 0.
// No dependencies: plain Node.js.
//
// Environment (besides the agent's own: COMFY_MULTI_SERVER, COMFY_MULTI_TOKEN, WORKER_NAME, ...):
//   COMFYUI_DIR      ComfyUI checkout (default /opt/ComfyUI)
//   COMFYUI_PORT     port ComfyUI listens on, loopback only (default 8188)
//   COMFYUI_ARGS     extra arguments for ComfyUI's main.py, split on spaces (e.g. "--lowvram")
//   COMFYUI_COMMAND  a whole shell command instead of python main.py (tests start the stand-in)
//   COMFYUI_START_TIMEOUT_SECONDS  how long ComfyUI may take to answer before it is restarted (600)
/* global fetch, AbortSignal */
import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';

const env = process.env;
const port = Number(env.COMFYUI_PORT || 8188);
const comfyDir = env.COMFYUI_DIR || '/opt/ComfyUI';
const comfyUrl = `http://127.0.0.1:${port}`;
const agentBin = env.COMFY_MULTI_BIN || '/opt/comfy-multi/bin/comfy-multi.js';
const startTimeoutMs = Number(env.COMFYUI_START_TIMEOUT_SECONDS || 600) * 1000;
const graceMs = Number(env.WORKER_GRACE_SECONDS || 30) * 1000;

const log = (msg) => process.stderr.write(`${new Date().toISOString()} supervisor: ${msg}\n`);

function comfyCommand() {
  if (env.COMFYUI_COMMAND) return ['/bin/sh', ['-c', env.COMFYUI_COMMAND], comfyDir];
  const args = [
    'main.py',
    '--listen',
    '127.0.0.1',
    '--port',
    String(port),
    '--extra-model-paths-config',
    `${comfyDir}/extra_model_paths.yaml`,
    '--disable-auto-launch',
    ...(env.COMFYUI_ARGS ? env.COMFYUI_ARGS.split(/\s+/).filter(Boolean) : []),
  ];
  return [env.COMFYUI_PYTHON || 'python3', args, comfyDir];
}

let stopping = false;
/** `comfy-multi worker` exits with this when the control plane revoked its token. */
const REVOKED_EXIT = 78;

/** One supervised child: started by `start()`, restarted with backoff whenever it exits. */
function supervise(name, command, before = async () => {}) {
  const self = { child: null, exited: Promise.resolve() };
  let backoff = 1000;
  const loop = async () => {
    while (!stopping) {
      await before();
      if (stopping) break;
      const [cmd, args, cwd] = command();
      const started = Date.now();
      log(`starting ${name}`);
      const child = spawn(cmd, args, { cwd, stdio: 'inherit', env });
      self.child = child;
      self.exited = new Promise((resolve) => child.once('exit', resolve));
      child.once('error', (err) => log(`${name} could not start: ${err.message}`));
      const code = await self.exited;
      self.child = null;
      if (stopping) break;
      // 78 (EX_CONFIG): the agent's token was revoked. Restarting would only knock with a dead
      // token; wait for a new token and a restart of the container/service instead.
      if (code === REVOKED_EXIT) {
        log(`${name} stopped: its worker token was revoked; set a new one and restart`);
        break;
      }
      // An ephemeral worker (WORKER_EXIT_WHEN_IDLE_SECONDS) exits 0 after its idle limit: the GPU
      // is no longer wanted, so end ComfyUI and the container too (that is what stops the bill).
      if (name === 'worker agent' && code === 0 && Number(env.WORKER_EXIT_WHEN_IDLE_SECONDS || 0) > 0) {
        log(`${name} left after its idle limit; stopping ComfyUI and exiting`);
        void stop('idle');
        break;
      }
      if (Date.now() - started > 60_000) backoff = 1000;
      log(`${name} exited (${code ?? 'signal'}); restarting in ${backoff / 1000} s`);
      await sleep(backoff);
      backoff = Math.min(backoff * 2, 30_000);
    }
  };
  self.done = loop();
  return self;
}

async function comfyAnswers() {
  try {
    return (await fetch(`${comfyUrl}/system_stats`, { signal: AbortSignal.timeout(5000) })).ok;
  } catch {
    return false;
  }
}

const comfy = supervise('ComfyUI', comfyCommand);
// The agent starts once ComfyUI answers, so its first registration carries ComfyUI's real
// object_info. If ComfyUI later dies the agent reports itself unhealthy until it is back.
const agent = supervise(
  'worker agent',
  () => [process.execPath, [agentBin, 'worker', '--comfyui', comfyUrl], undefined],
  async () => {
    let until = Date.now() + startTimeoutMs;
    let said = false;
    while (!stopping && !(await comfyAnswers())) {
      if (!said) log(`waiting for ComfyUI at ${comfyUrl}`);
      said = true;
      if (Date.now() > until) {
        log(`ComfyUI did not answer within ${startTimeoutMs / 1000} s; restarting it`);
        comfy.child?.kill('SIGKILL');
        until = Date.now() + startTimeoutMs;
      }
      await sleep(1000);
    }
  },
);

async function stopChild(name, s, timeoutMs) {
  if (!s.child) return;
  s.child.kill('SIGTERM');
  const killed = await Promise.race([s.exited.then(() => false), sleep(timeoutMs).then(() => true)]);
  if (killed) {
    log(`${name} did not stop within ${timeoutMs / 1000} s; killing it`);
    s.child?.kill('SIGKILL');
    await s.exited;
  }
}

const stop = async (signal) => {
  if (stopping) return;
  stopping = true;
  log(`stopping (${signal}): the worker agent first, then ComfyUI`);
  await stopChild('worker agent', agent, graceMs + 10_000);
  await stopChild('ComfyUI', comfy, 15_000);
  log('stopped');
  process.exit(0);
};
process.on('SIGTERM', () => void stop('SIGTERM'));
process.on('SIGINT', () => void stop('SIGINT'));
