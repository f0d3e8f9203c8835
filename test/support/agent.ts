/**
 * A real worker agent for the in-process end-to-end tests (a harness control plane listening on a
 * port, the ComfyUI stand-in or a real ComfyUI behind the agent).
 */
import { pino } from 'pino';
import { getCurrentEnv } from '../../src/dispatch/env-snapshots.js';
import { startAgent, type AgentHandle, type AgentOptions } from '../../src/worker/agent/index.js';
import type { Harness } from './app-harness.js';
import { startStandin, type Standin, type StandinOptions } from './comfyui-standin/server.js';
import { waitFor } from './processes.js';

/**
 * An agent's options as the tests run one: silent, probing and reconnecting quickly, holding no
 * job ahead in ComfyUI's queue (prefetch 0). `opts` overrides any of these.
 */
export function testAgentOptions(opts: AgentOptions): AgentOptions {
  return {
    prefetch: 0,
    logger: pino({ level: 'silent' }),
    probeIntervalMs: 200,
    backoff: { baseMs: 50, maxMs: 300 },
    ...opts,
  };
}

/** Starts an agent with {@link testAgentOptions}. */
export function startTestAgent(opts: AgentOptions): AgentHandle {
  return startAgent(testAgentOptions(opts));
}

/**
 * Waits until the agent has registered and uploaded its ComfyUI environment (object_info & co.,
 * sent on first contact): before that, prompts are refused as naming unknown nodes.
 */
export async function agentReady(h: Harness, timeoutMs = 30_000): Promise<void> {
  await waitFor(() => h.services.workers.online().length === 1, timeoutMs, 'the worker to register');
  await waitFor(
    async () => (await getCurrentEnv(h.services.store)) !== null,
    timeoutMs,
    'the environment snapshot',
  );
}

/** One GPU beside a harness: a ComfyUI (the stand-in, or a real one) and a test agent serving it. */
export interface TestGpu {
  /** Null when a real ComfyUI takes the stand-in's place. */
  standin: Standin | null;
  comfyuiUrl: string;
  agent: AgentHandle;
  /** Stops the agent, then the stand-in. */
  stop(): Promise<void>;
}

/**
 * Starts the ComfyUI stand-in (with `standin` options) or, when `realComfyui` is set (the tests'
 * COMFYUI_URL), uses that ComfyUI instead; then a test agent for it connected to `serverUrl`, and
 * waits until `h` has it ready.
 */
export async function startTestGpu(
  h: Harness,
  opts: {
    serverUrl: string;
    token: string;
    name: string;
    realComfyui?: string | null;
    standin?: StandinOptions;
    /** More agent options (models folder, progress intervals, …). */
    agent?: Partial<AgentOptions>;
  },
): Promise<TestGpu> {
  const standin = opts.realComfyui ? null : await startStandin(opts.standin ?? {});
  const comfyuiUrl = opts.realComfyui ?? standin!.url;
  const agent = startTestAgent({
    ...opts.agent,
    serverUrl: opts.serverUrl,
    token: opts.token,
    comfyuiUrl,
    name: opts.name,
  });
  await agentReady(h);
  return {
    standin,
    comfyuiUrl,
    agent,
    async stop() {
      await agent.stop();
      await standin?.close();
    },
  };
}
