/**
 * All configuration, as one zod schema over environment variables. Each entry's `describe()` is
 * the documentation: `npm run docs:config` renders docs/configuration.md from it, and a test
 * fails when that file is out of date.
 *
 * Two self-contained groups live in sibling modules, each spread into the object where its rows
 * belong in the table: backup-schema.ts (BACKUP_) and autoscale-schema.ts (AUTOSCALE_). Checks
 * that tie a group to other variables stay here.
 */
import { z } from 'zod';
import { bool, int } from './parsers.js';
import { QUEUE_MODES } from '../store/types.js';
import { AUTOSCALE_CONFIG, checkAutoscale } from './autoscale-schema.js';
import { BACKUP_CONFIG, checkBackup } from './backup-schema.js';

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

/**
 * PUBLIC_URL: an http(s) origin. The server answers at the root of its host (`/login`, `/<user>/`),
 * so a path (`https://host/workshop`) would make every link wrong; it is refused, not guessed.
 */
const publicUrl = z.string().transform((s, ctx) => {
  let url: URL;
  try {
    url = new URL(s.trim());
  } catch {
    ctx.addIssue({ code: 'custom', message: 'expected a URL such as https://workshop.example.org' });
    return z.NEVER;
  }
  const problem =
    url.protocol !== 'http:' && url.protocol !== 'https:'
      ? 'must start with http:// or https://'
      : url.username || url.password
        ? 'must not contain a user name or password'
        : url.pathname !== '/' || url.search || url.hash
          ? 'must be just scheme, host and optional port (no path, query or #): the server answers at the root of its host'
          : null;
  if (problem) {
    ctx.addIssue({ code: 'custom', message: problem });
    return z.NEVER;
  }
  return url.origin;
});

export const configSchema = z
  .object({
    HOST: z.string().min(1).default('0.0.0.0').describe('Address the server listens on.'),
    PORT: int(0, 65535)
      .default(8080)
      .describe('Port of the control plane: HTTP, or HTTPS with TLS_CERT and TLS_KEY.'),
    DATA_DIR: z
      .string()
      .min(1)
      .default('./data')
      .describe('Folder for the SQLite database, credentials and (with FILES=local) user files.'),
    LOG_LEVEL: z
      .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])
      .default('info')
      .describe('pino log level.'),
    PUBLIC_URL: publicUrl
      .optional()
      .describe(
        'Address participants open to reach the server, e.g. https://workshop.example.org: the base of sign-in links and login cards. http(s) only, no path, query or user; a trailing slash is dropped. Default http://localhost:PORT (https:// with TLS_CERT; only this machine can open that). An https URL also makes session cookies `Secure`.',
      ),
    TRUST_PROXY: bool
      .default(false)
      .describe(
        'Trust X-Forwarded-* headers (set when behind nginx or Caddy), for client IPs and TLS detection.',
      ),

    TLS_CERT: z
      .string()
      .min(1)
      .optional()
      .describe(
        'PEM certificate file, chain included (e.g. /etc/letsencrypt/live/<name>/fullchain.pem). With TLS_KEY, the server speaks HTTPS and WSS on PORT. Unset (default): plain HTTP. Reloaded on SIGHUP.',
      ),
    TLS_KEY: z
      .string()
      .min(1)
      .optional()
      .describe(
        'PEM private key of TLS_CERT (RSA or EC, not passphrase-protected), e.g. privkey.pem; must be readable by the user the server runs as. Default: unset.',
      ),
    HTTP_REDIRECT_PORT: int(0, 65535)
      .optional()
      .describe(
        'With TLS: also listen on this port (on HOST) for plain HTTP that only redirects to https (301, or 308 for non-GET) keeping path and query — to PUBLIC_URL when it is https, else to the requested host on PORT — and answers `/health` itself. Typically 80 with PORT=443. Default: unset (no plain-HTTP listener).',
      ),
    HSTS_MAX_AGE: int(0, 63_072_000)
      .default(31_536_000)
      .describe(
        'Strict-Transport-Security max-age in seconds, sent on every HTTPS response (our own TLS, or a trusted proxy that says https); 0 sends no HSTS header. Default 31536000 (one year).',
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

    FILES: z
      .enum(['local', 's3'])
      .default('local')
      .describe(
        "Where participants' files (uploads, outputs, workflows) live: `local` (DATA_DIR/files) or `s3` (an S3-compatible bucket: AWS S3, Cloudflare R2, MinIO). With s3, credentials come from the standard AWS variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_PROFILE, ...).",
      ),
    S3_ENDPOINT: z
      .string()
      .url()
      .optional()
      .describe(
        'S3 endpoint for FILES=s3 (and the default for s3:// backup targets), e.g. https://<account>.r2.cloudflarestorage.com or http://minio:9000. Unset for AWS S3.',
      ),
    S3_BUCKET: z.string().min(1).optional().describe('Bucket of the files, required with FILES=s3.'),
    S3_PREFIX: z
      .string()
      .default('')
      .describe('Key prefix of every file object in S3_BUCKET, e.g. `comfy-multi/files/` (default: none).'),
    S3_REGION: z
      .string()
      .min(1)
      .default('auto')
      .describe('S3 region: `auto` for Cloudflare R2, the bucket region (e.g. eu-central-1) for AWS.'),
    S3_FORCE_PATH_STYLE: bool
      .default(false)
      .describe('Address buckets as ENDPOINT/bucket/key instead of bucket.ENDPOINT/key (needed by MinIO).'),

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

    BODY_LIMIT: size
      .default(10 * 1024 * 1024)
      .describe(
        'Largest request body of routes without a limit of their own (prompts, /api/v1 JSON), e.g. 10mb. Larger bodies get 413.',
      ),
    SETTINGS_LIMIT: size
      .default(1024 * 1024)
      .describe(
        'Largest ComfyUI settings file of a participant (`/<user>/api/settings`; a real one is a few kB), e.g. 1mb. A POST that would make it larger gets 413.',
      ),
    USERDATA_LIMIT: size
      .default(20 * 1024 * 1024)
      .describe(
        'Largest userdata file (a saved workflow, subgraph, template) a participant may write through `/<user>/api/userdata/…`, e.g. 20mb. Larger bodies get 413.',
      ),
    HEADERS_TIMEOUT_MS: int(1_000, 600_000)
      .default(30_000)
      .describe(
        "How long a client may take to send a request's headers before the connection is closed (slowloris defence). Checked every 30 s, so the effective time is up to 30 s longer.",
      ),
    BODY_IDLE_TIMEOUT_MS: int(0, 3_600_000)
      .default(60_000)
      .describe(
        'A request whose body stops arriving for this long is dropped (the connection is closed), so trickled bodies cannot hold connections open. A slow but steady upload is never cut. 0 disables.',
      ),
    REQUEST_TIMEOUT_MS: int(0, 86_400_000)
      .default(3_600_000)
      .describe(
        'The longest a client may take to send one whole request, body included (Node.js `requestTimeout`; 1 h lets a 500 MB video upload finish at about 1 Mbit/s). 0 disables.',
      ),
    SHUTDOWN_GRACE_MS: int(0, 600_000)
      .default(10_000)
      .describe(
        "On SIGTERM/SIGINT, how long requests in flight (a download, a page load) and open WebSockets get to finish; then their connections are closed and the process exits. Keep it below the service manager's stop timeout (systemd: 90 s; Docker: 10 s, so give the container a longer `stop_grace_period`).",
      ),
    WORKER_WS_MAX_PAYLOAD: size
      .default(64 * 1024 * 1024)
      .describe(
        "Largest WebSocket message a worker agent may send (its environment snapshot with ComfyUI's object_info is the biggest: about 0.5 MB for a bare ComfyUI, a few MB with many custom nodes), e.g. 64mb. Participants' and the dashboard's sockets take at most 64 kB.",
      ),
    UPLOAD_LIMIT: size
      .default(1024 ** 3)
      .describe(
        "Largest file a participant may upload through ComfyUI (`/upload/image`, `/upload/mask`; LoadVideo's upload uses `/upload/image` too), e.g. 500mb. The default, 1 GB, is sized for footage (a minute of 4K phone video is about 400 MB); ComfyUI's own is 100 MB. Uploads are streamed to the file store, never held in memory. Larger uploads get 413 with the limit in the message, a declared larger body before any of it is read.",
      ),
    LORA_UPLOAD_LIMIT: size
      .default(2 * 1024 ** 3)
      .describe(
        'Largest LoRA a participant may upload into their own space (`POST /<user>/api/loras`), e.g. 500mb. Only `.safetensors` files are accepted (the header is checked; pickles are refused). Larger uploads get 413.',
      ),
    LORA_QUOTA: size
      .default(4 * 1024 ** 3)
      .describe(
        "How many bytes of LoRAs one participant may keep (the sum of their own LoRAs), e.g. 2gb. An upload that would pass it gets 413 `LORA_QUOTA_EXCEEDED`; the dashboard's participants table shows each participant's use.",
      ),
    FFPROBE_PATH: z
      .string()
      .default('ffprobe')
      .describe(
        "ffprobe (Debian's `ffmpeg` package) for the gallery's video durations: a path, or a name looked up on PATH. Optional: when it cannot be run the gallery shows videos without durations. Empty turns it off.",
      ),
    FFMPEG_PATH: z
      .string()
      .default('ffmpeg')
      .describe(
        "ffmpeg (Debian's `ffmpeg` package) for the gallery's video poster frames, made once per video and cached in DATA_DIR/cache/posters: a path, or a name looked up on PATH. Optional: when it cannot be run the gallery's videos show their first frame as the browser loads it. Empty turns it off.",
      ),
    FRONTEND_DIR: z
      .string()
      .min(1)
      .optional()
      .describe(
        "A built ComfyUI frontend (the `static/` folder of the comfyui-frontend-package Python package, or an unzipped frontend release `dist/`), served unmodified to every participant at /<user>/. Unset (default): the frontend is copied from a connected worker's ComfyUI (see FRONTEND_MIRROR); until one arrives, /<user>/ shows a page saying what to do.",
      ),
    MODEL_DOWNLOADS_ALLOW_LOCAL_HTTP: bool
      .default(false)
      .describe(
        'Let instructors download model files over plain http from 127.0.0.1/localhost (tests and local mirrors). Off: model URLs must be https.',
      ),
    FRONTEND_MIRROR: bool
      .default(true)
      .describe(
        "Without FRONTEND_DIR, copy the ComfyUI web frontend (and custom nodes' web files) from the first worker's ComfyUI, keep it on disk per version in FRONTEND_CACHE_DIR and serve it, also while no worker is online. Workers are trusted to provide it; set false to serve only FRONTEND_DIR.",
      ),
    FRONTEND_CACHE_DIR: z
      .string()
      .min(1)
      .optional()
      .describe('Where mirrored frontends are kept, one folder per version. Default DATA_DIR/frontend.'),
    FRONTEND_KEEP_VERSIONS: int(1, 100)
      .default(3)
      .describe(
        'Mirrored frontend versions kept on disk; older ones are deleted. Files of kept versions stay reachable, so a browser that loaded an older version can still fetch its lazy chunks.',
      ),
    TEMPLATE_LIBRARY_MIRROR: bool
      .default(true)
      .describe(
        "Copy ComfyUI's own template library (the `comfyui-workflow-templates` package a worker's ComfyUI serves at /templates/) from the first worker that has it, keep it on disk in DATA_DIR/template-library and list it in every participant's Templates dialog, after the workshop's own templates. Set false to list only the workshop's templates.",
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
        "Workflow file (`*.json`) copied into each new participant's workflows on their first visit and opened for them once. A workshop template marked as the default on the dashboard takes its place.",
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
      .describe(
        'Failed logins of one account from one address that cost nothing; then one more attempt every LOGIN_WINDOW_SECONDS / LOGIN_MAX_FAILURES seconds (12 s by default). A correct login empties the count. Default 5.',
      ),
    LOGIN_WINDOW_SECONDS: int(1, 86_400)
      .default(60)
      .describe(
        'Time in which the LOGIN_MAX_FAILURES failures of one account from one address are forgotten (they leak away evenly). Default 60.',
      ),
    LOGIN_ADDRESS_MAX_FAILURES: int(1, 100_000)
      .default(100)
      .describe(
        'Failed logins from one address (an IPv6 /64 counts as one), over all accounts, allowed per LOGIN_ADDRESS_WINDOW_SECONDS. Well above a room behind one venue NAT (20 people × a few typos); stops a script trying many names. Default 100.',
      ),
    LOGIN_ADDRESS_WINDOW_SECONDS: int(1, 86_400)
      .default(900)
      .describe('Time in which LOGIN_ADDRESS_MAX_FAILURES failures are forgotten. Default 900 (15 min).'),
    LOGIN_ACCOUNT_MAX_FAILURES: int(1, 100_000)
      .default(30)
      .describe(
        'Failed logins of one account, over all addresses, allowed per LOGIN_ACCOUNT_WINDOW_SECONDS; beyond it one attempt every window / max seconds (6 s by default): slows guessing from many addresses without locking the participant out. Addresses the account signed in from in the last 12 hours are exempt. Default 30.',
      ),
    LOGIN_ACCOUNT_WINDOW_SECONDS: int(1, 86_400)
      .default(180)
      .describe('Time in which LOGIN_ACCOUNT_MAX_FAILURES failures are forgotten. Default 180.'),
    LOGIN_BCRYPT_THREADS: int(0, 8)
      .default(1)
      .describe(
        'Worker threads checking passwords (bcrypt, ~60 ms each): at most this many checks run at once, off the main thread, so a burst of logins never stalls /health or participants. 0 checks on the main thread, one at a time. Default 1.',
      ),
    LOGIN_QUEUE_MAX: int(1, 10_000)
      .default(40)
      .describe(
        'Password checks allowed to wait for a free bcrypt thread; a login beyond that is refused at once with 503 LOGIN_BUSY and Retry-After. Default 40 (a whole room signing in at once, a few seconds of work).',
      ),

    METRICS_TOKEN: z
      .string()
      .min(16, 'use at least 16 characters')
      .optional()
      .describe(
        'Bearer token Prometheus must send to scrape `/metrics`. When unset, `/metrics` is open to anyone who can reach the server.',
      ),
    DASHBOARD_SAMPLE_SECONDS: int(1, 600)
      .default(10)
      .describe(
        "Resolution of the dashboard's charts (queue depth, waiting time, GPU busy share): one point per this many seconds. The last 6 hours are kept in memory.",
      ),
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

    // ---- backups (src/backup): src/config/backup-schema.ts
    ...BACKUP_CONFIG,

    // ---- GPUs on demand (src/autoscale): src/config/autoscale-schema.ts
    ...AUTOSCALE_CONFIG,
  })
  .superRefine((c, ctx) => {
    checkAutoscale(c, ctx);
    if (c.STORE === 'redis' && !c.REDIS_URL) {
      ctx.addIssue({ code: 'custom', path: ['REDIS_URL'], message: 'is required when STORE=redis' });
    }
    if (!c.TLS_CERT !== !c.TLS_KEY) {
      ctx.addIssue({
        code: 'custom',
        path: [c.TLS_CERT ? 'TLS_KEY' : 'TLS_CERT'],
        message: 'set both TLS_CERT and TLS_KEY, or neither',
      });
    }
    if (c.HTTP_REDIRECT_PORT !== undefined) {
      if (!c.TLS_CERT) {
        ctx.addIssue({
          code: 'custom',
          path: ['HTTP_REDIRECT_PORT'],
          message: 'needs TLS_CERT and TLS_KEY (it redirects plain HTTP to the HTTPS port)',
        });
      } else if (c.HTTP_REDIRECT_PORT === c.PORT && c.PORT !== 0) {
        ctx.addIssue({ code: 'custom', path: ['HTTP_REDIRECT_PORT'], message: 'must differ from PORT' });
      }
    }
    if (c.FILES === 's3' && !c.S3_BUCKET) {
      ctx.addIssue({ code: 'custom', path: ['S3_BUCKET'], message: 'is required when FILES=s3' });
    }
    checkBackup(c, ctx);
    if (c.BACKUP_TARGET?.startsWith('s3://')) {
      const m = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:\/(.*))?$/.exec(c.BACKUP_TARGET);
      if (!m) {
        ctx.addIssue({ code: 'custom', path: ['BACKUP_TARGET'], message: 'expected s3://bucket/prefix' });
      } else if (c.FILES === 's3' && m[1] === c.S3_BUCKET) {
        // Backups inside the files' prefix would be listed (and backed up) as user files, and
        // files inside the backup prefix could be garbage-collected.
        const norm = (p: string) => (p.replace(/^\/+|\/+$/g, '') ? `${p.replace(/^\/+|\/+$/g, '')}/` : '');
        const a = norm(c.S3_PREFIX);
        const b = norm(m[2] ?? '');
        if (a.startsWith(b) || b.startsWith(a)) {
          ctx.addIssue({
            code: 'custom',
            path: ['BACKUP_TARGET'],
            message: 'must not overlap S3_BUCKET/S3_PREFIX (use another bucket or a separate prefix)',
          });
        }
      }
    }
  });

export type Config = z.output<typeof configSchema>;
export type ConfigInput = z.input<typeof configSchema>;
