/**
 * All configuration, as one zod schema over environment variables. Each entry's `describe()` is
 * the documentation: `npm run docs:config` renders docs/configuration.md from it, and a test
 * fails when that file is out of date.
 */
import { z } from 'zod';
import { QUEUE_MODES } from '../store/types.js';

const bool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no', ''])
  .transform((v) => v === 'true' || v === '1' || v === 'yes');

const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);

/** `name:secret` pairs separated by commas, as in `WORKER_TOKENS=gpu1:abc,gpu2:def`. */
const namedSecrets = z.string().transform((s, ctx) => {
  const out: { name: string; secret: string }[] = [];
  for (const part of s
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean)) {
    const i = part.indexOf(':');
    if (i <= 0 || i === part.length - 1) {
      ctx.addIssue({ code: 'custom', message: 'expected comma-separated name:token pairs' });
      return z.NEVER;
    }
    out.push({ name: part.slice(0, i), secret: part.slice(i + 1) });
  }
  return out;
});

const size = z
  .string()
  .regex(/^\d+(\.\d+)?\s*(b|kb|mb|gb)?$/i, 'expected a size such as 10mb or 1048576')
  .transform((s) => {
    const m = /^(\d+(?:\.\d+)?)\s*(b|kb|mb|gb)?$/i.exec(s)!;
    const unit = { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 }[(m[2] ?? 'b').toLowerCase() as 'b'];
    return Math.round(Number(m[1]) * unit);
  });

export const configSchema = z
  .object({
    HOST: z.string().min(1).default('0.0.0.0').describe('Address the server listens on.'),
    PORT: int(0, 65535).default(8080).describe('HTTP port of the control plane.'),
    DATA_DIR: z
      .string()
      .min(1)
      .default('./data')
      .describe('Folder for the SQLite database, credentials and (with FILES=local) user files.'),
    LOG_LEVEL: z
      .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])
      .default('info')
      .describe('pino log level.'),
    PUBLIC_URL: z
      .string()
      .url()
      .optional()
      .describe(
        'URL participants use to reach the server (login links in credentials files). Default http://localhost:PORT.',
      ),
    TRUST_PROXY: bool
      .default(false)
      .describe(
        'Trust X-Forwarded-* headers (set when behind nginx or Caddy), for client IPs and TLS detection.',
      ),

    STORE: z.enum(['sqlite', 'redis']).default('sqlite').describe('State backend: embedded SQLite or Redis.'),
    REDIS_URL: z
      .string()
      .url()
      .optional()
      .describe('Redis URL, required with STORE=redis. Enable AOF on that Redis.'),
    REDIS_PREFIX: z
      .string()
      .min(1)
      .default('cm:')
      .describe('Prefix of every Redis key this deployment uses.'),

    QUEUE_MODE: z
      .enum(QUEUE_MODES)
      .default('round_robin')
      .describe('Initial scheduling policy: fifo, round_robin or priority. Instructors can switch it live.'),
    MAX_PENDING_PER_USER: int(1, 100_000).default(10).describe('Most jobs one participant may have waiting.'),
    MAX_RUNNING_PER_USER: int(1, 1000)
      .default(1)
      .describe('Most jobs one participant may have running while others wait.'),
    LEASE_MS: int(1000, 3_600_000)
      .default(30_000)
      .describe('Lease a worker holds on a job; renewed by heartbeats. An expired lease requeues the job.'),
    MAX_ATTEMPTS: int(1, 100).default(3).describe('Claims of one job before it fails with worker_lost.'),
    AFFINITY_WINDOW: int(1, 64)
      .default(4)
      .describe('How many of the top-ranked jobs model affinity may choose among (1 disables affinity).'),
    AFFINITY_MAX_SKIPS: int(0, 100)
      .default(2)
      .describe(
        'How many times affinity may pass over one job: the most it can delay any job, in dispatches.',
      ),
    HEARTBEAT_MS: int(50, 600_000)
      .default(5_000)
      .describe(
        'How often worker agents send heartbeats (each renews the leases of the jobs they hold). Capped at a third of LEASE_MS. A worker silent for 3 intervals is disconnected.',
      ),
    OUTPUT_UPLOAD_LIMIT: size
      .default(2 * 1024 ** 3)
      .describe('Largest output file a worker may upload, e.g. 2gb.'),
    WORKER_OFFLINE_RETENTION_MINUTES: int(0, 10_080)
      .default(60)
      .describe('How long a disconnected worker stays listed (as offline) in /api/v1/workers.'),
    HISTORY_RETENTION_DAYS: int(0, 3650)
      .default(30)
      .describe('Finished jobs older than this are deleted (0 keeps them forever).'),

    BODY_LIMIT: size.default(10 * 1024 * 1024).describe('Largest JSON request body, e.g. 10mb.'),
    UPLOAD_LIMIT: size
      .default(50 * 1024 * 1024)
      .describe(
        'Largest file a participant may upload through ComfyUI (`/upload/image`, `/upload/mask`), e.g. 50mb. Larger uploads get 413.',
      ),
    TEMPLATES_DIR: z
      .string()
      .min(1)
      .optional()
      .describe(
        "Folder of shared, read-only workflow files (`*.json`, subfolders allowed) that appear in every participant's workflow list; saving a changed one saves the participant's own copy.",
      ),
    DEFAULT_WORKFLOW: z
      .string()
      .min(1)
      .optional()
      .describe(
        "Workflow file (`*.json`) copied into each new participant's workflows on their first visit and opened for them once.",
      ),
    ADMIN_PASSWORD: z
      .string()
      .min(8)
      .optional()
      .describe(
        'Password of the `admin` instructor created on first start. Random (printed once) when unset.',
      ),
    API_TOKENS: namedSecrets
      .default([])
      .describe(
        'Bearer tokens for scripts using /api/v1 with instructor rights: comma-separated name:token pairs.',
      ),
    WORKER_TOKENS: namedSecrets
      .default([])
      .describe(
        'Worker tokens accepted besides those created with `comfy-multi workers token create`: comma-separated name:token pairs.',
      ),
    LOGIN_MAX_FAILURES: int(1, 1000)
      .default(5)
      .describe('Failed logins per user or IP before further attempts are refused for a while.'),
    LOGIN_WINDOW_SECONDS: int(1, 86_400)
      .default(60)
      .describe('Window for LOGIN_MAX_FAILURES; the lockout doubles on each further failure.'),

    METRICS_TOKEN: z
      .string()
      .min(16, 'use at least 16 characters')
      .optional()
      .describe(
        'Bearer token Prometheus must send to scrape `/metrics`. When unset, `/metrics` is open to anyone who can reach the server.',
      ),
    DASHBOARD_SAMPLE_SECONDS: int(1, 600)
      .default(10)
      .describe("Resolution of the dashboard's charts (queue depth, waiting time, GPU busy share): one point per this many seconds. The last 6 hours are kept in memory."),
    ALERT_WEBHOOK_URL: z
      .string()
      .url()
      .optional()
      .describe(
        'Where alerts are POSTed as JSON (`text`, `title`, `message`, `severity`, `event`, `details`): a Slack-compatible incoming webhook, an ntfy server, or any JSON receiver. No alerts when unset.',
      ),
    ALERT_WEBHOOK_TOPIC: z
      .string()
      .min(1)
      .optional()
      .describe(
        'ntfy topic: when set, alerts also carry `topic` (and ntfy `priority`/`tags`), and ALERT_WEBHOOK_URL should be the ntfy server root, e.g. https://ntfy.sh.',
      ),
    ALERT_STALL_MINUTES: int(1, 1440)
      .default(5)
      .describe(
        'Alert "queue stalled" when jobs have been waiting this long with no healthy, non-draining GPU worker (not while the queue is paused).',
      ),
    ALERT_DISK_MIN_FREE: size
      .default(2 * 1024 ** 3)
      .describe(
        'Alert "disk nearly full" when the free space of DATA_DIR falls below this, e.g. 2gb. Checked every minute.',
      ),
    ALERT_REPEAT_MINUTES: int(1, 1440)
      .default(15)
      .describe(
        'The same alert (same event and subject, e.g. one worker) is sent at most once per this many minutes; repeats in between are counted and reported with the next one.',
      ),
  })
  .superRefine((c, ctx) => {
    if (c.STORE === 'redis' && !c.REDIS_URL) {
      ctx.addIssue({ code: 'custom', path: ['REDIS_URL'], message: 'is required when STORE=redis' });
    }
  });

export type Config = z.output<typeof configSchema>;
export type ConfigInput = z.input<typeof configSchema>;
