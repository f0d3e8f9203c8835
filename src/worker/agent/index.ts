/**
 * The worker agent: `startAgent()` connects one ComfyUI to the control plane and runs jobs until
 * `stop()`. See docs/worker-agent.md for running it and src/worker/protocol.ts for the protocol.
 */
import { randomUUID } from 'node:crypto';
import { pino, type Logger } from 'pino';
import { ComfyClient } from '../../comfy/comfy-client.js';
import type { EphemeralInfo } from '../protocol.js';
import { WorkerAgent, type AgentStatus } from './agent.js';

export { WorkerAgent } from './agent.js';
import { DEFAULT_BACKOFF, type BackoffOptions } from './backoff.js';

export type { AgentStatus } from './agent.js';
export type { FrontendState, FrontendStatus } from './frontend-mirror.js';

export interface AgentOptions {
  /** Control plane base URL, e.g. `https://workshop.example.org`. */
  serverUrl: string;
  /** Worker token (`comfy-multi workers token create NAME`, or `WORKER_TOKENS` on the server). */
  token: string;
  /** ComfyUI base URL, e.g. `http://127.0.0.1:8188`. */
  comfyuiUrl: string;
  /** Worker name shown to instructors; with the token's name it identifies the worker. */
  name: string;
  /** Jobs held in ComfyUI's own queue besides the running one (0-8). Default 1. */
  prefetch?: number;
  logger?: Logger;
  /** Between ComfyUI health probes. Default 2000 ms. */
  probeIntervalMs?: number;
  /** Per ComfyUI health probe. Default 3000 ms. */
  probeTimeoutMs?: number;
  /** Failed probes in a row before ComfyUI counts as down. Default 2. */
  failuresToUnhealthy?: number;
  /** Control-plane reconnect backoff. Default 250 ms doubling to 15 s, with jitter. */
  backoff?: BackoffOptions;
  /** Per ComfyUI HTTP request (not file bodies). Default 30 s. */
  comfyTimeoutMs?: number;
  /**
   * Offer the ComfyUI web frontend to the control plane when it asks for one (`welcome.mirrorFrontend`,
   * sent by a control plane without FRONTEND_DIR). Default true; false never offers it.
   */
  mirrorFrontend?: boolean;
  /**
   * Read the frontend to offer from this folder (e.g. the `static/` folder of the
   * `comfyui-frontend-package` Python package) instead of over HTTP from ComfyUI; custom nodes' web
   * files still come from ComfyUI. Default: none (read everything over HTTP).
   */
  frontendDir?: string;
  /** Between failed frontend mirror tries. Default 10 s doubling to 10 min, with jitter. */
  frontendRetry?: BackoffOptions;
  /**
   * Offer ComfyUI's template library (`/templates/`, the comfyui-workflow-templates package) when
   * the control plane asks (`welcome.mirrorTemplates`). Default true; false never offers it.
   */
  mirrorTemplates?: boolean;
  /**
   * Called once the control plane revoked the worker token (the agent dropped its jobs and stopped
   * talking to it; call `stop()` to end the rest). Default: nothing.
   */
  onRevoked?: () => void;
  /** A disposable worker started on demand: its provider and instance, said in `hello`. */
  ephemeral?: EphemeralInfo;
  /**
   * Call `onIdle` once the agent has held no job for this many ms (an ephemeral worker then stops
   * and exits, ending the GPU's bill). Default: never.
   */
  exitWhenIdleMs?: number;
  onIdle?: () => void;
  /**
   * ComfyUI's models folder (the one holding `checkpoints/`, `loras/`, ...). With it the agent
   * downloads the model files instructors add from the dashboard; without it it takes none.
   */
  modelsDir?: string;
  /**
   * ComfyUI's output folder (its `--output-directory`, default `<ComfyUI>/output`) when the agent
   * runs on the same machine: outputs are read from it instead of through ComfyUI's `/view`, which
   * a busy ComfyUI serves slowly. Default none: every output comes through `/view`.
   */
  outputDir?: string;
  /** Free bytes of a folder's file system (default: statfs). Tests simulate a full disk with it. */
  freeDiskBytes?: (dir: string) => Promise<number>;
  /** Between model download progress reports. Default 1000 ms. */
  modelProgressMs?: number;
  /** First wait before retrying a failed model download request (doubling). Default 1000 ms. */
  modelRetryDelayMs?: number;
  /**
   * ComfyUI's `models/loras` folder (writable by the agent): participants' own LoRAs are put in
   * its `_users/` folder for their jobs, cached by sha256. Default: none (jobs using a
   * participant's own LoRA fail on this worker with a message saying so).
   */
  lorasDir?: string;
}

export interface AgentHandle {
  /**
   * Stops taking jobs, hands back those ComfyUI has not started, lets a running one finish for up
   * to `graceMs` (default 0), then hands it back too and disconnects.
   */
  stop(opts?: { graceMs?: number }): Promise<void>;
  status(): AgentStatus;
}

export function startAgent(opts: AgentOptions): AgentHandle {
  const agent = createAgent(opts);
  agent.start();
  return { stop: (o) => agent.stop(o), status: () => agent.status() };
}

/** The agent, not yet started (`start()`); {@link startAgent} is the usual entry point. */
export function createAgent(opts: AgentOptions): WorkerAgent {
  const prefetch = opts.prefetch ?? 1;
  if (!Number.isInteger(prefetch) || prefetch < 0 || prefetch > 8) {
    throw new RangeError('prefetch must be a whole number from 0 to 8');
  }
  const logger = opts.logger ?? pino({ level: 'info' });
  const comfy = new ComfyClient({
    baseUrl: opts.comfyuiUrl,
    clientId: `comfy-multi-${randomUUID()}`,
    timeoutMs: opts.comfyTimeoutMs ?? 30_000,
  });
  return new WorkerAgent(
    {
      serverUrl: opts.serverUrl,
      token: opts.token,
      name: opts.name,
      prefetch,
      logger,
      probeIntervalMs: opts.probeIntervalMs ?? 2000,
      probeTimeoutMs: opts.probeTimeoutMs ?? 3000,
      failuresToUnhealthy: opts.failuresToUnhealthy ?? 2,
      backoff: opts.backoff ?? DEFAULT_BACKOFF,
      uploadConcurrency: 2,
      uploadAttempts: 8,
      mirrorFrontend: opts.mirrorFrontend ?? true,
      frontendDir: opts.frontendDir,
      frontendRetry: opts.frontendRetry,
      mirrorTemplates: opts.mirrorTemplates,
      onRevoked: opts.onRevoked,
      ephemeral: opts.ephemeral,
      exitWhenIdleMs: opts.exitWhenIdleMs,
      onIdle: opts.onIdle,
      modelsDir: opts.modelsDir,
      outputDir: opts.outputDir,
      freeDiskBytes: opts.freeDiskBytes,
      modelProgressMs: opts.modelProgressMs,
      modelRetryDelayMs: opts.modelRetryDelayMs,
      lorasDir: opts.lorasDir,
    },
    comfy,
  );
}
