/**
 * The AUTOSCALE_ variables of the configuration schema (GPUs on demand, src/autoscale), spread into
 * `configSchema` in schema.ts, and their cross-field checks. Each `describe()` is documentation
 * (`npm run docs:config`); each JSDoc states the default.
 */
import { z } from 'zod';
import { bool, int } from './parsers.js';

export const AUTOSCALE_CONFIG = {
  /** Default `none`: no autoscaling, workers are started by hand. */
  AUTOSCALE_PROVIDER: z
    .enum(['none', 'local', 'command', 'verda', 'runpod', 'runpod-serverless', 'verda-containers'])
    .default('none')
    .describe(
      'Start and stop GPU workers on demand: `local` (agent processes on this machine against AUTOSCALE_LOCAL_COMFYUI_URLS), `command` (your own up/down/list scripts), `verda` (Verda/DataCrunch instances), `runpod` (RunPod pods), `runpod-serverless` (the workers of a RunPod serverless endpoint), `verda-containers` (the replicas of a Verda serverless container deployment), or `none` (workers are started by hand). See the admin guide, "GPUs on demand".',
    ),
  /** Default 0: scale to zero. */
  AUTOSCALE_MIN_WORKERS: int(0, 100)
    .default(0)
    .describe('Workers the autoscaler keeps running even with an empty queue.'),
  /** Default 2. */
  AUTOSCALE_MAX_WORKERS: int(1, 100)
    .default(2)
    .describe(
      'Most workers the autoscaler runs at once (starting ones included). Must be at least AUTOSCALE_MIN_WORKERS.',
    ),
  /** Default 8 (from `npm run bench -- autoscale`: 4 waits less and bills more). */
  AUTOSCALE_JOBS_PER_WORKER: int(1, 1000)
    .default(8)
    .describe('Waiting plus running jobs one worker is expected to absorb; more asks for another worker.'),
  /** Default 120 s. */
  AUTOSCALE_MAX_WAIT_SECONDS: int(1, 86_400)
    .default(120)
    .describe('A job waiting longer than this asks for one more worker when none is idle or starting.'),
  /** Default 300 s. */
  AUTOSCALE_IDLE_SECONDS: int(0, 86_400)
    .default(300)
    .describe('A started worker that held no job this long is stopped (never below AUTOSCALE_MIN_WORKERS).'),
  /** Default 30 s. */
  AUTOSCALE_UP_COOLDOWN_SECONDS: int(0, 86_400)
    .default(30)
    .describe('Least time between two scale-ups (also between retries of a failed start).'),
  /** Default 60 s. */
  AUTOSCALE_DOWN_COOLDOWN_SECONDS: int(0, 86_400)
    .default(60)
    .describe('Least time between two idle scale-downs.'),
  /** Default 600 s. */
  AUTOSCALE_START_TIMEOUT_SECONDS: int(10, 86_400)
    .default(600)
    .describe(
      'A started worker that has not registered by then is stopped and the instructor alerted; its jobs wait for the next GPU.',
    ),
  /** Default 5 s. */
  AUTOSCALE_INTERVAL_SECONDS: int(1, 3600)
    .default(5)
    .describe('How often the autoscaler looks at the queue (it also looks at once when a job is queued).'),
  /** Default 0: no cap. */
  AUTOSCALE_DAILY_GPU_HOURS: z.coerce
    .number()
    .min(0)
    .max(100_000)
    .default(0)
    .describe(
      'Daily cap of GPU hours the autoscaler may bill (0 = no cap). Once spent it starts nothing and stops idle workers.',
    ),
  /** Default 0: no cap. */
  AUTOSCALE_DAILY_BUDGET: z.coerce
    .number()
    .min(0)
    .max(10_000_000)
    .default(0)
    .describe(
      'Daily cap in money (0 = no cap), turned into hours with AUTOSCALE_PRICE_PER_HOUR; the smaller of both caps applies.',
    ),
  /** Default 0: unknown. */
  AUTOSCALE_PRICE_PER_HOUR: z.coerce
    .number()
    .min(0)
    .max(100_000)
    .default(0)
    .describe(
      'Price of one worker hour of this provider and instance type, for the cost figures and AUTOSCALE_DAILY_BUDGET.',
    ),
  /** Default: unset (only AUTOSCALE_PRICE_PER_HOUR, for the provider's own instance type). */
  AUTOSCALE_PRICES: z
    .string()
    .transform((s, ctx) => {
      const out: Record<string, number> = {};
      for (const part of s
        .split(',')
        .map((p) => p.trim())
        .filter(Boolean)) {
        const m = /^([A-Za-z0-9._:/-]{1,64})=(\d+(?:\.\d+)?)$/.exec(part);
        if (!m) {
          ctx.addIssue({ code: 'custom', message: `expected TYPE=PRICE pairs, got "${part.slice(0, 80)}"` });
          return z.NEVER;
        }
        out[m[1]!] = Number(m[2]);
      }
      return out;
    })
    .optional()
    .describe(
      'Price per hour by instance type, e.g. `rtx4090=0.69,a100-80g=1.89,manual=0` (`manual`: workers started by hand), for the cost per worker and per participant. Overrides AUTOSCALE_PRICE_PER_HOUR for the types it names.',
    ),
  /** Default 80. */
  AUTOSCALE_BUDGET_ALERT_PERCENT: int(1, 100)
    .default(80)
    .describe("Alert the instructor once today's GPU use passes this share of the daily cap."),
  /** Default false. */
  AUTOSCALE_DRY_RUN: bool
    .default(false)
    .describe(
      'Decide and show what would be started or stopped (dashboard, log), without starting or stopping anything.',
    ),
  /** Default: unset; required with a provider. */
  AUTOSCALE_WORKER_TOKEN: z
    .string()
    .min(1)
    .optional()
    .describe(
      'Worker token the started workers use (one of WORKER_TOKENS, or from `comfy-multi workers token create`). Required with AUTOSCALE_PROVIDER.',
    ),
  /** Default: PUBLIC_URL, else http://127.0.0.1:PORT. */
  AUTOSCALE_SERVER_URL: z
    .url({ protocol: /^https?$/, error: 'expected an http(s) URL' })
    .optional()
    .describe(
      'Control-plane URL the started workers connect to. Default PUBLIC_URL, else http://127.0.0.1:PORT.',
    ),
  /** Default: the provider's name. */
  AUTOSCALE_INSTANCE_TYPE: z
    .string()
    .regex(/^[A-Za-z0-9._:/-]{1,64}$/, 'expected 1-64 letters, digits or ._:/-')
    .optional()
    .describe(
      'Label of what the provider starts (e.g. `rtx4090`); start times are measured and prices set per label.',
    ),
  /** Default: unset; required with AUTOSCALE_PROVIDER=local. */
  AUTOSCALE_LOCAL_COMFYUI_URLS: z
    .string()
    .transform((s) =>
      s
        .split(',')
        .map((u) => u.trim())
        .filter(Boolean),
    )
    .refine((us) => us.every((u) => /^https?:\/\/[^\s]+$/.test(u)), 'expected comma-separated http(s) URLs')
    .optional()
    .describe(
      'local provider: the ComfyUI(s) the started agents run against, comma-separated (one agent per ComfyUI is best).',
    ),
  /** Default: this installation's bin/comfy-multi.js run by node. */
  AUTOSCALE_LOCAL_COMMAND: z
    .string()
    .transform((s) => s.trim().split(/\s+/).filter(Boolean))
    .optional()
    .describe(
      'local provider: program and leading arguments that run the comfy-multi CLI (`worker …` is appended).',
    ),
  /** Default: unset; required with AUTOSCALE_PROVIDER=command. */
  AUTOSCALE_COMMAND_UP: z
    .string()
    .min(1)
    .optional()
    .describe('command provider: shell command that starts one worker (admin guide, "GPUs on demand").'),
  /** Default: unset; required with AUTOSCALE_PROVIDER=command. */
  AUTOSCALE_COMMAND_DOWN: z
    .string()
    .min(1)
    .optional()
    .describe('command provider: shell command that stops instance WORKER_INSTANCE.'),
  /** Default: unset; required with AUTOSCALE_PROVIDER=command. */
  AUTOSCALE_COMMAND_LIST: z
    .string()
    .min(1)
    .optional()
    .describe('command provider: shell command that prints the running instances, one `id [name]` a line.'),
  /** Default https://api.verda.com/v1. */
  AUTOSCALE_VERDA_API_URL: z
    .url({ protocol: /^https?$/, error: 'expected an http(s) URL' })
    .default('https://api.verda.com/v1')
    .transform((u) => u.replace(/\/+$/, ''))
    .describe(
      "verda and verda-containers providers: base URL of the Verda (formerly DataCrunch) public API; the official SDK's default (formerly https://api.datacrunch.io/v1).",
    ),
  /** Default: unset; required with AUTOSCALE_PROVIDER=verda. */
  AUTOSCALE_VERDA_CLIENT_ID: z
    .string()
    .min(1)
    .optional()
    .describe('verda provider: OAuth2 client id of an API key (Verda console, Keys).'),
  /** Default: unset; required with AUTOSCALE_PROVIDER=verda. */
  AUTOSCALE_VERDA_CLIENT_SECRET: z
    .string()
    .min(1)
    .optional()
    .describe('verda provider: OAuth2 client secret of that key.'),
  /** Default: unset; required with AUTOSCALE_PROVIDER=verda. */
  AUTOSCALE_VERDA_IMAGE: z
    .string()
    .min(1)
    .optional()
    .describe(
      'verda provider: OS image of the instances, one with Docker and the NVIDIA driver (Verda image name).',
    ),
  /** Default FIN-01. */
  AUTOSCALE_VERDA_LOCATIONS: z
    .string()
    .default('FIN-01')
    .transform((s) =>
      s
        .split(',')
        .map((l) => l.trim())
        .filter(Boolean),
    )
    .describe('verda provider: location codes, comma-separated, tried in order when one has no capacity.'),
  /** Default: none. */
  AUTOSCALE_VERDA_SSH_KEY_IDS: z
    .string()
    .default('')
    .transform((s) =>
      s
        .split(',')
        .map((l) => l.trim())
        .filter(Boolean),
    )
    .describe('verda provider: SSH key ids put on the instances (for debugging them), comma-separated.'),
  /** Default false. */
  AUTOSCALE_VERDA_SPOT: bool
    .default(false)
    .describe('verda provider: start spot instances (cheaper, may be taken back; their jobs are requeued).'),
  /** Default: unset; required with AUTOSCALE_PROVIDER=verda or runpod. */
  AUTOSCALE_WORKER_IMAGE: z
    .string()
    .min(1)
    .optional()
    .describe(
      'verda and runpod providers: the GPU container image (deploy/gpu/Dockerfile pushed to your registry) the instances run.',
    ),
  /** Default https://rest.runpod.io/v1. */
  AUTOSCALE_RUNPOD_API_URL: z
    .url({ protocol: /^https?$/, error: 'expected an http(s) URL' })
    .default('https://rest.runpod.io/v1')
    .transform((u) => u.replace(/\/+$/, ''))
    .describe('runpod provider: base URL of the RunPod REST API.'),
  /** Default: unset; required with AUTOSCALE_PROVIDER=runpod. */
  AUTOSCALE_RUNPOD_API_KEY: z
    .string()
    .min(1)
    .optional()
    .describe('runpod provider: API key (RunPod console, Settings, API Keys), read/write.'),
  /** Default: unset; required with AUTOSCALE_PROVIDER=runpod. */
  AUTOSCALE_RUNPOD_GPU_TYPES: z
    .string()
    .transform((s) =>
      s
        .split(',')
        .map((l) => l.trim())
        .filter(Boolean),
    )
    .optional()
    .describe(
      'runpod provider: GPU type ids, comma-separated, in order of preference (e.g. `NVIDIA GeForce RTX 4090,NVIDIA RTX A6000`).',
    ),
  /** Default SECURE. */
  AUTOSCALE_RUNPOD_CLOUD_TYPE: z
    .enum(['SECURE', 'COMMUNITY'])
    .default('SECURE')
    .describe('runpod provider: Secure Cloud or Community Cloud pods.'),
  /** Default: any. */
  AUTOSCALE_RUNPOD_DATA_CENTERS: z
    .string()
    .default('')
    .transform((s) =>
      s
        .split(',')
        .map((l) => l.trim())
        .filter(Boolean),
    )
    .describe('runpod provider: data center ids, comma-separated (e.g. `EU-RO-1`); empty = any.'),
  /** Default 40 GB. */
  AUTOSCALE_RUNPOD_DISK_GB: int(10, 2000)
    .default(40)
    .describe('runpod provider: container disk of each pod, GB.'),
  /** Default: unset; required with AUTOSCALE_PROVIDER=runpod-serverless. */
  AUTOSCALE_RUNPOD_ENDPOINT_ID: z
    .string()
    .regex(/^[A-Za-z0-9_-]{1,64}$/, 'must be a RunPod endpoint id (letters, digits, _ and -)')
    .optional()
    .describe(
      'runpod-serverless provider: the serverless endpoint whose workers run the GPU image; the autoscaler sets its minimum workers.',
    ),
  /** Default: unset; required with AUTOSCALE_PROVIDER=verda-containers. */
  AUTOSCALE_VERDA_DEPLOYMENT: z
    .string()
    .regex(/^[A-Za-z0-9_-]{1,128}$/, 'must be a Verda container deployment name')
    .optional()
    .describe(
      'verda-containers provider: the container deployment whose replicas run the GPU image; the autoscaler sets its minimum replicas.',
    ),
  /** Default: none. */
  AUTOSCALE_RUNPOD_NETWORK_VOLUME: z
    .string()
    .min(1)
    .optional()
    .describe('runpod provider: network volume id with the models, mounted into each pod.'),
};

/** Cross-field checks of the AUTOSCALE_ variables: each a sentence naming the variable. */
export function checkAutoscale(
  c: {
    AUTOSCALE_PROVIDER:
      'none' | 'local' | 'command' | 'verda' | 'runpod' | 'runpod-serverless' | 'verda-containers';
    AUTOSCALE_RUNPOD_ENDPOINT_ID?: string | undefined;
    AUTOSCALE_VERDA_DEPLOYMENT?: string | undefined;
    AUTOSCALE_INSTANCE_TYPE?: string | undefined;
    AUTOSCALE_VERDA_CLIENT_ID?: string | undefined;
    AUTOSCALE_VERDA_CLIENT_SECRET?: string | undefined;
    AUTOSCALE_VERDA_IMAGE?: string | undefined;
    AUTOSCALE_VERDA_LOCATIONS: string[];
    AUTOSCALE_WORKER_IMAGE?: string | undefined;
    AUTOSCALE_RUNPOD_API_KEY?: string | undefined;
    AUTOSCALE_RUNPOD_GPU_TYPES?: string[] | undefined;
    AUTOSCALE_MIN_WORKERS: number;
    AUTOSCALE_MAX_WORKERS: number;
    AUTOSCALE_DAILY_BUDGET: number;
    AUTOSCALE_PRICE_PER_HOUR: number;
    AUTOSCALE_WORKER_TOKEN?: string | undefined;
    AUTOSCALE_LOCAL_COMFYUI_URLS?: string[] | undefined;
    AUTOSCALE_COMMAND_UP?: string | undefined;
    AUTOSCALE_COMMAND_DOWN?: string | undefined;
    AUTOSCALE_COMMAND_LIST?: string | undefined;
  },
  ctx: z.RefinementCtx,
): void {
  const issue = (path: string, message: string) => ctx.addIssue({ code: 'custom', path: [path], message });
  if (c.AUTOSCALE_MAX_WORKERS < c.AUTOSCALE_MIN_WORKERS)
    issue('AUTOSCALE_MAX_WORKERS', 'must be at least AUTOSCALE_MIN_WORKERS');
  if (c.AUTOSCALE_DAILY_BUDGET > 0 && c.AUTOSCALE_PRICE_PER_HOUR === 0)
    issue('AUTOSCALE_PRICE_PER_HOUR', 'is required when AUTOSCALE_DAILY_BUDGET is set');
  if (c.AUTOSCALE_PROVIDER === 'none') return;
  if (!c.AUTOSCALE_WORKER_TOKEN)
    issue('AUTOSCALE_WORKER_TOKEN', `is required when AUTOSCALE_PROVIDER=${c.AUTOSCALE_PROVIDER}`);
  if (c.AUTOSCALE_PROVIDER === 'local' && !c.AUTOSCALE_LOCAL_COMFYUI_URLS?.length)
    issue('AUTOSCALE_LOCAL_COMFYUI_URLS', 'is required when AUTOSCALE_PROVIDER=local');
  if (c.AUTOSCALE_PROVIDER === 'command') {
    for (const k of ['AUTOSCALE_COMMAND_UP', 'AUTOSCALE_COMMAND_DOWN', 'AUTOSCALE_COMMAND_LIST'] as const)
      if (!c[k]) issue(k, 'is required when AUTOSCALE_PROVIDER=command');
  }
  if (c.AUTOSCALE_PROVIDER === 'verda') {
    for (const k of [
      'AUTOSCALE_VERDA_CLIENT_ID',
      'AUTOSCALE_VERDA_CLIENT_SECRET',
      'AUTOSCALE_VERDA_IMAGE',
      'AUTOSCALE_INSTANCE_TYPE',
      'AUTOSCALE_WORKER_IMAGE',
    ] as const)
      if (!c[k]) issue(k, 'is required when AUTOSCALE_PROVIDER=verda');
    if (c.AUTOSCALE_VERDA_LOCATIONS.length === 0)
      issue('AUTOSCALE_VERDA_LOCATIONS', 'needs at least one location code');
  }
  if (c.AUTOSCALE_PROVIDER === 'runpod') {
    if (!c.AUTOSCALE_RUNPOD_API_KEY)
      issue('AUTOSCALE_RUNPOD_API_KEY', 'is required when AUTOSCALE_PROVIDER=runpod');
    if (!c.AUTOSCALE_RUNPOD_GPU_TYPES?.length)
      issue('AUTOSCALE_RUNPOD_GPU_TYPES', 'is required when AUTOSCALE_PROVIDER=runpod');
    if (!c.AUTOSCALE_WORKER_IMAGE)
      issue('AUTOSCALE_WORKER_IMAGE', 'is required when AUTOSCALE_PROVIDER=runpod');
  }
  if (c.AUTOSCALE_PROVIDER === 'runpod-serverless') {
    for (const k of ['AUTOSCALE_RUNPOD_API_KEY', 'AUTOSCALE_RUNPOD_ENDPOINT_ID'] as const)
      if (!c[k]) issue(k, 'is required when AUTOSCALE_PROVIDER=runpod-serverless');
  }
  if (c.AUTOSCALE_PROVIDER === 'verda-containers') {
    for (const k of [
      'AUTOSCALE_VERDA_CLIENT_ID',
      'AUTOSCALE_VERDA_CLIENT_SECRET',
      'AUTOSCALE_VERDA_DEPLOYMENT',
    ] as const)
      if (!c[k]) issue(k, 'is required when AUTOSCALE_PROVIDER=verda-containers');
  }
}
