/**
 * The worker agent's settings (filled in by the CLI and by tests) and the status it reports (the
 * agent's local status endpoint). Apart from {@link WorkerAgent} because they are its public
 * shape: read here without the wiring behind them. Re-exported from agent.ts.
 */
import type { Logger } from 'pino';
import type { EphemeralInfo } from '../protocol.js';
import type { BackoffOptions } from './backoff.js';
import type { ControlLink } from './control-link.js';
import type { FrontendStatus } from './frontend-mirror.js';
import type { AgentJob } from './jobs.js';
import type { ReadAheadStatus } from './model-read-ahead.js';

export interface AgentSettings {
  serverUrl: string;
  token: string;
  name: string;
  prefetch: number;
  logger: Logger;
  probeIntervalMs: number;
  probeTimeoutMs: number;
  failuresToUnhealthy: number;
  backoff: BackoffOptions;
  /** Outputs of one job uploaded at the same time. */
  uploadConcurrency: number;
  /** Tries per output before the job fails with `upload_failed`. */
  uploadAttempts: number;
  /** Offer the ComfyUI frontend when the control plane asks (`welcome.mirrorFrontend`). */
  mirrorFrontend: boolean;
  /** Read the frontend from this folder instead of over HTTP from ComfyUI. */
  frontendDir?: string | undefined;
  /** Between failed mirror tries. Default 10 s doubling to 10 min. */
  frontendRetry?: BackoffOptions | undefined;
  /** Offer ComfyUI's template library when the control plane asks (`welcome.mirrorTemplates`). Default true. */
  mirrorTemplates?: boolean | undefined;
  /**
   * The control plane revoked the worker token: the agent has dropped its jobs (they are back in
   * the queue) and stopped talking. The CLI exits; default: nothing more.
   */
  onRevoked?: (() => void) | undefined;
  /** A disposable worker: said in `hello` so the control plane knows who started it. */
  ephemeral?: EphemeralInfo | undefined;
  /**
   * With `onIdle`: after this long holding nothing, `onIdle` is called once (the CLI then stops
   * gracefully and exits). Default: never.
   */
  exitWhenIdleMs?: number | undefined;
  onIdle?: (() => void) | undefined;
  /** ComfyUI's models folder: with it the agent takes model downloads (`model_download`). */
  modelsDir?: string | undefined;
  /** ComfyUI's output folder on this machine: outputs are read from it, not through `/view`. Default none. */
  outputDir?: string | undefined;
  /** Free bytes of a folder's file system (default statfs); tests simulate a full disk. */
  freeDiskBytes?: ((dir: string) => Promise<number>) | undefined;
  /** Between model download progress reports. Default 1000 ms. */
  modelProgressMs?: number | undefined;
  /** First wait before retrying a failed model download request. Default 1000 ms. */
  modelRetryDelayMs?: number | undefined;
  /** ComfyUI's `models/loras` folder, where participants' own LoRAs are put for their jobs. */
  lorasDir?: string | undefined;
}

export interface AgentStatus {
  name: string;
  workerId: string | null;
  control: ReturnType<ControlLink['status']>;
  comfyui: {
    url: string;
    healthy: boolean;
    version: string | null;
    lastError: string | null;
    socketOpen: boolean;
  };
  envHash: string | null;
  draining: boolean;
  stopping: boolean;
  /** Milliseconds without a job, when the agent exits on idle; else null. */
  idleMs: number | null;
  /** The copy of the ComfyUI web frontend offered to the control plane. */
  frontend: FrontendStatus;
  /** The copy of ComfyUI's template library offered to the control plane. */
  templates: FrontendStatus;
  /** Model files read ahead into the page cache (model warm-up). */
  readAhead: ReadAheadStatus;
  jobs: { jobId: string; attempt: number; user: string; promptId: string; state: AgentJob['state'] }[];
}
