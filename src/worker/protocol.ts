/**
 * The worker protocol, version 1: what a worker agent and the control plane say to each other over
 * the agent's one outbound WebSocket (`/worker/v1/ws`, `Authorization: Bearer <worker token>`).
 * docs/worker-protocol.md explains the flow; this file is the contract both sides validate.
 *
 * Text frames carry one JSON message each. Binary frames carry ComfyUI preview images:
 * `[u8 version=1][u16 BE jobId byte length][jobId utf8][the ComfyUI binary frame unchanged]`.
 *
 * Files never travel over the socket: outputs go up with
 * `PUT /worker/v1/jobs/:jobId/attempts/:attempt/outputs/:node/<subfolder/filename>?type=&kind=` and
 * inputs come down with `GET /worker/v1/jobs/:jobId/inputs/<path>`, both streamed. So do the
 * ComfyUI web frontend and template library, when the control plane asks for them
 * (`welcome.mirrorFrontend`, `welcome.mirrorTemplates`): their HTTP offers are in
 * protocol-mirror.ts, re-exported here so importers use this one module.
 */
import { z } from 'zod';

export * from './protocol-mirror.js';

export const PROTOCOL_VERSION = 1;

/**
 * WebSocket close code: the worker token was revoked. The agent must not reconnect with it (its
 * jobs were already given back to the queue); it logs why and stops.
 */
export const CLOSE_TOKEN_REVOKED = 4004;

/**
 * WebSocket close code 1012 ("service restart", RFC 6455 registry): this control-plane process is
 * draining (SIGTERM, a rolling restart). The agent reconnects at once, without back-off, and the
 * load balancer sends it to another process; it keeps its jobs (they stay claimed, `hello` lists
 * them in `inFlight` and the new process re-adopts them). Participants' `/ws` get the same code,
 * on which the ComfyUI frontend reconnects after 300 ms as on any close.
 */
export const CLOSE_SERVICE_RESTART = 1012;

/** Largest random delay before reconnecting after {@link CLOSE_SERVICE_RESTART}, so a fleet spreads. */
export const SERVICE_RESTART_JITTER_MS = 500;

/**
 * The longest an agent waits between two reconnect attempts (before jitter). A control plane that
 * comes back gives running jobs this much more than a lease, so an agent still in its back-off
 * after a long outage reconnects and reports before anyone else can claim its job.
 */
export const AGENT_MAX_RECONNECT_MS = 15_000;

const jobRef = { jobId: z.string().min(1).max(128), attempt: z.number().int().min(1) };

export const jobOutputSchema = z
  .strictObject({
    nodeId: z.string().max(64),
    /** '' only on a non-file entry (one with `value`). */
    filename: z.string().max(255),
    subfolder: z.string().max(1024),
    type: z.enum(['output', 'temp']),
    kind: z.string().max(64),
    size: z.number().int().min(0).optional(),
    sha256: z
      .string()
      .regex(/^[0-9a-f]{64}$/)
      .optional(),
    /** A non-file entry of the node's `ui[kind]` (`animated`, `text`, ...), as ComfyUI sent it. */
    value: z.unknown().optional(),
    /** A file entry's further fields (VHS `format`, `frame_rate`, `workflow`, ...). */
    extra: z.record(z.string(), z.unknown()).optional(),
  })
  .refine((o) => o.value !== undefined || o.filename !== '', {
    message: 'A file output needs a filename.',
    path: ['filename'],
  });

export const jobErrorSchema = z.object({
  reason: z.string().max(64),
  message: z.string().max(20_000),
  nodeId: z.string().max(64).optional(),
  nodeType: z.string().max(256).optional(),
  exceptionType: z.string().max(256).optional(),
  traceback: z.array(z.string().max(20_000)).max(500).optional(),
  details: z.record(z.string(), z.unknown()).optional(),
});

export const deviceSchema = z.object({
  name: z.string().max(256),
  type: z.string().max(64),
  vramTotal: z.number().min(0),
  vramFree: z.number().min(0),
});

/** A job the agent holds: `queued` in ComfyUI's own queue (prefetched) or `running`. */
export const inFlightSchema = z.object({ ...jobRef, state: z.enum(['queued', 'running']) });

// ---- model downloads (both directions) ----------------------------------------------------------
//
// The control plane sends `model_download` (a URL, a ComfyUI models folder, a file name, an optional
// sha256 and bearer token); the agent downloads into `<models dir>/.comfy-multi-downloads/*.part`
// (resumable with HTTP Range), checks the sha256, renames the file into `<models dir>/<folder>/`
// and answers `model_download_progress` (throttled, and on every change of state). A file that did
// not pass every check is never renamed into a folder ComfyUI reads.

/** ComfyUI models folders (folder_paths names) an instructor may download into. */
export const MODEL_DOWNLOAD_FOLDERS = [
  'checkpoints',
  'loras',
  'diffusion_models',
  'text_encoders',
  'vae',
  'clip',
  'clip_vision',
  'controlnet',
  'upscale_models',
  'latent_upscale_models',
  'embeddings',
  'style_models',
  'gligen',
  'hypernetworks',
  'photomaker',
  'audio_encoders',
  'model_patches',
  'vae_approx',
] as const;
export type ModelDownloadFolder = (typeof MODEL_DOWNLOAD_FOLDERS)[number];

/** A file name inside one models folder: no path separators, no leading dot, no control characters. */
export const modelFileNameSchema = z
  .string()
  .min(1)
  .max(255)
  .refine(
    // eslint-disable-next-line no-control-regex -- control characters are exactly what is refused
    (n) => !/[\\/\u0000-\u001f\u007f]/.test(n) && !n.startsWith('.') && n.trim() === n,
    'a model file name has no path separators (/ or \\), no leading dot, no control characters and no surrounding spaces',
  );

const downloadId = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/);
const sha256Hex = z.string().regex(/^[0-9a-f]{64}$/);

/**
 * `queued` (waiting for this worker's earlier downloads), `checking` (asking the server, checking
 * disk space), `downloading`, `verifying` (sha256, rename), then one of `done`, `failed`,
 * `cancelled`.
 */
export const MODEL_DOWNLOAD_STATES = [
  'queued',
  'checking',
  'downloading',
  'verifying',
  'done',
  'failed',
  'cancelled',
] as const;
export type ModelDownloadState = (typeof MODEL_DOWNLOAD_STATES)[number];
export const TERMINAL_DOWNLOAD_STATES: readonly ModelDownloadState[] = ['done', 'failed', 'cancelled'];

export const modelDownloadStatusSchema = z.object({
  downloadId,
  state: z.enum(MODEL_DOWNLOAD_STATES),
  /** Bytes of the file on disk so far (a resumed download starts at the partial file's size). */
  received: z.number().int().min(0),
  /** The file's size when the server said it, else null. */
  total: z.number().int().min(0).nullable(),
  /** When `done`: the file's sha256 (null when it was already there and not re-read). */
  sha256: sha256Hex.nullable().optional(),
  /** When `done`: the file was already in the folder; nothing was downloaded. */
  existing: z.boolean().optional(),
  /** When `failed`: a short code (`http_404`, `checksum_mismatch`, `disk_full`, ...) and one sentence. */
  error: z.object({ code: z.string().max(64), message: z.string().max(2000) }).optional(),
});
export type ModelDownloadStatus = z.infer<typeof modelDownloadStatusSchema>;

/** Agent → control plane: where a download stands. */
export const modelDownloadProgressMessage = modelDownloadStatusSchema.extend({
  type: z.literal('model_download_progress'),
});

/** Control plane → agent: download one model file into ComfyUI's models folder. */
export const modelDownloadMessage = z.object({
  type: z.literal('model_download'),
  downloadId,
  /** https (http only where the control plane allows it, for tests on 127.0.0.1). */
  url: z.string().url().max(4096),
  folder: z.enum(MODEL_DOWNLOAD_FOLDERS),
  filename: modelFileNameSchema,
  /** Expected sha256; a file that does not match is deleted, never moved into place. */
  sha256: sha256Hex.optional(),
  /** Sent as `Authorization: Bearer` to the URL's origin (not across redirects); never logged. */
  token: z.string().min(1).max(4096).optional(),
});

/** Control plane → agent: stop that download and delete its partial file. */
export const modelDownloadCancelMessage = z.object({ type: z.literal('model_download_cancel'), downloadId });

// ---- agent → control plane -------------------------------------------------------------------

/** Who started an ephemeral worker: the autoscaler's provider name and that provider's instance id. */
export const ephemeralSchema = z.strictObject({
  provider: z.string().min(1).max(64),
  instance: z.string().min(1).max(256),
  /** Exits on its own after this many seconds without a job. */
  exitWhenIdleSeconds: z.number().int().min(1).max(86_400).optional(),
});
export type EphemeralInfo = z.infer<typeof ephemeralSchema>;

export const helloMessage = z.object({
  type: z.literal('hello'),
  protocol: z.literal(PROTOCOL_VERSION),
  name: z.string().min(1).max(64),
  agentVersion: z.string().max(64),
  comfyuiVersion: z.string().max(64),
  devices: z.array(deviceSchema).max(64),
  /** sha256 of the environment snapshot; the server asks for it only when it has not got it. */
  envHash: z.string().regex(/^[0-9a-f]{64}$/),
  /** Jobs held in ComfyUI's queue besides the running one. Default 1. */
  prefetch: z.number().int().min(0).max(8),
  /** After a reconnect: what the agent still holds, so nothing runs twice. */
  inFlight: z.array(inFlightSchema).max(16),
  warmModels: z.array(z.string().max(1024)).max(256),
  healthy: z.boolean(),
  /** The agent is stopping: send it nothing new, keep renewing what it holds. Absent means false. */
  stopping: z.boolean().optional(),
  /**
   * The agent keeps each report (`job_completed`, `job_failed`, `job_released`, `job_cancelled`)
   * until the server answers `ack`, and sends unacknowledged ones again. Absent means false.
   */
  acks: z.boolean().optional(),
  /**
   * The agent numbers its job events (`job_event.seq`) when the welcome says `eventSeq`, and sends
   * a job's events again after a reconnect. Absent means false.
   */
  eventSeq: z.boolean().optional(),
  /**
   * A disposable worker started on demand (`--exit-when-idle`): which provider started it and its
   * instance there, so the autoscaler can tell its own workers and their start times. Absent for
   * a worker someone started by hand.
   */
  ephemeral: ephemeralSchema.optional(),
  /**
   * The agent knows ComfyUI's models folder (`--models-dir`) and takes `model_download`. Absent
   * means false: the control plane sends it no downloads.
   */
  modelDownloads: z.boolean().optional(),
  /** After a reconnect: the state of every model download the agent still knows (see below). */
  downloads: z.array(modelDownloadStatusSchema).max(64).optional(),
});

/** Everything the per-user ComfyUI needs while no GPU is online. */
export const envSnapshotSchema = z.object({
  comfyuiVersion: z.string(),
  objectInfo: z.record(z.string(), z.unknown()),
  embeddings: z.array(z.string()),
  models: z.record(z.string(), z.array(z.string())),
  extensions: z.array(z.string()),
  systemStats: z.record(z.string(), z.unknown()),
});
export type EnvSnapshot = z.infer<typeof envSnapshotSchema>;

export const envMessage = z.object({
  type: z.literal('env'),
  hash: z.string().regex(/^[0-9a-f]{64}$/),
  snapshot: envSnapshotSchema,
});

export const heartbeatMessage = z.object({
  type: z.literal('heartbeat'),
  healthy: z.boolean(),
  devices: z.array(deviceSchema).max(64),
  inFlight: z.array(inFlightSchema).max(16),
  /** As in `hello`: stopping, finishing what it holds (a graceful stop). Absent means false. */
  stopping: z.boolean().optional(),
});

/** ComfyUI started the job (its `execution_start`). */
export const jobStartedMessage = z.object({ type: z.literal('job_started'), ...jobRef });

/** One ComfyUI WebSocket event about the job, relayed as ComfyUI sent it. */
export const jobEventMessage = z.object({
  type: z.literal('job_event'),
  ...jobRef,
  event: z.object({ type: z.string().max(64), data: z.unknown() }),
  /**
   * The event's number within this attempt (0, 1, 2, …), sent by agents told `eventSeq` in the
   * welcome. Such an agent keeps a job's events until its report is acknowledged and, after a
   * reconnect, sends them all again (in order, before any report); the server keeps each number
   * once. Absent: relayed once, lost with a connection that drops.
   */
  seq: z.number().int().min(0).max(1_000_000_000).optional(),
  /**
   * Which run of the attempt `seq` counts in (the agent's ComfyUI prompt id for it): an attempt
   * handed back before it counted keeps its number, and its next run starts again at 0.
   */
  run: z.string().max(64).optional(),
});

export const jobCompletedMessage = z.object({
  type: z.literal('job_completed'),
  ...jobRef,
  outputs: z.array(jobOutputSchema).max(10_000),
});

export const jobFailedMessage = z.object({ type: z.literal('job_failed'), ...jobRef, error: jobErrorSchema });

/** The agent gives a job back unrun (asked to, or ComfyUI became unreachable before it ran). */
export const jobReleasedMessage = z.object({
  type: z.literal('job_released'),
  ...jobRef,
  reason: z.string().max(200),
});

/** The job was cancelled in ComfyUI as asked. */
export const jobCancelledMessage = z.object({ type: z.literal('job_cancelled'), ...jobRef });

export const agentMessage = z.discriminatedUnion('type', [
  helloMessage,
  modelDownloadProgressMessage,
  envMessage,
  heartbeatMessage,
  jobStartedMessage,
  jobEventMessage,
  jobCompletedMessage,
  jobFailedMessage,
  jobReleasedMessage,
  jobCancelledMessage,
]);
export type AgentMessage = z.infer<typeof agentMessage>;

// ---- control plane → agent -------------------------------------------------------------------

export const welcomeMessage = z.object({
  type: z.literal('welcome'),
  protocol: z.literal(PROTOCOL_VERSION),
  workerId: z.string(),
  leaseMs: z.number().int(),
  heartbeatMs: z.number().int(),
  needEnv: z.boolean(),
  /** In-flight jobs from `hello` the server no longer recognises: drop them, do not report them. */
  forget: z.array(z.object(jobRef)),
  /**
   * The control plane has no FRONTEND_DIR and wants a copy of the ComfyUI web frontend this worker's
   * ComfyUI serves (offer it with `POST /worker/v1/frontend/offers`). Absent means false.
   */
  mirrorFrontend: z.boolean().optional(),
  /**
   * The control plane wants a copy of ComfyUI's template library (the `comfyui-workflow-templates`
   * package ComfyUI serves at `/templates/`): offer it with `POST /worker/v1/templates/offers`,
   * same flow as the frontend. Absent means false.
   */
  mirrorTemplates: z.boolean().optional(),
  /** The server acknowledges every report (`ack`) once it is recorded. Absent means false. */
  acks: z.boolean().optional(),
  /**
   * The server records every entry of a node's output: `job_completed` may list non-file entries
   * (`value`) and file fields (`extra`). Absent means false: send files only, as before.
   */
  outputEntries: z.boolean().optional(),
  /**
   * The server takes numbered job events (`job_event.seq`) and keeps each number once, so the agent
   * may send a job's events again after a reconnect. Absent means false: each event once.
   */
  eventSeq: z.boolean().optional(),
  /**
   * The server serves an output announced before it is stored (its `/view` waits for the upload):
   * relay `executed` and ComfyUI's `execution_success` at once while the outputs upload, and report
   * `job_completed` once they are stored, as always. Absent means false: relay an `executed` only
   * once its files are stored.
   */
  earlyOutputs: z.boolean().optional(),
  /**
   * Model files (`<folder>/<name>`) the jobs at the head of the queue load: read them ahead into
   * the page cache (model-read-ahead.ts). Sent to a worker that holds nothing. Absent means none.
   */
  warmup: z.array(z.string().max(512)).max(64).optional(),
});

export const assignMessage = z.object({
  type: z.literal('assign'),
  job: z.object({
    ...jobRef,
    user: z.string(),
    prompt: z.record(z.string(), z.unknown()),
    /** ComfyUI `extra_data` to pass along (e.g. `extra_pnginfo` with the workflow). */
    extraData: z.record(z.string(), z.unknown()),
    front: z.boolean(),
  }),
});

export const cancelMessage = z.object({ type: z.literal('cancel'), ...jobRef });

/** Give back a prefetched job that ComfyUI has not started yet (priority change, drain). */
export const releaseMessage = z.object({ type: z.literal('release'), ...jobRef });

export const drainMessage = z.object({ type: z.literal('drain'), draining: z.boolean() });

/** The reports an agent keeps until the server acknowledges them. */
export const REPORT_TYPES = ['job_completed', 'job_failed', 'job_released', 'job_cancelled'] as const;
export type ReportType = (typeof REPORT_TYPES)[number];

/**
 * A report (`report` names its type) of that attempt is recorded in the store, or was judged
 * stale: either way, do not send it again. Sent only to agents whose `hello` said `acks: true`.
 */
export const ackMessage = z.object({ type: z.literal('ack'), report: z.enum(REPORT_TYPES), ...jobRef });

export const serverErrorMessage = z.object({
  type: z.literal('error'),
  code: z.string(),
  message: z.string(),
});

export const serverMessage = z.discriminatedUnion('type', [
  welcomeMessage,
  assignMessage,
  cancelMessage,
  releaseMessage,
  drainMessage,
  ackMessage,
  serverErrorMessage,
  modelDownloadMessage,
  modelDownloadCancelMessage,
]);
export type ServerMessage = z.infer<typeof serverMessage>;

// ---- binary preview frames -------------------------------------------------------------------

export function encodePreviewFrame(jobId: string, comfyFrame: Buffer): Buffer {
  const id = Buffer.from(jobId, 'utf8');
  const head = Buffer.alloc(3);
  head.writeUInt8(1, 0);
  head.writeUInt16BE(id.length, 1);
  return Buffer.concat([head, id, comfyFrame]);
}

export function decodePreviewFrame(frame: Buffer): { jobId: string; comfyFrame: Buffer } | null {
  if (frame.length < 3 || frame.readUInt8(0) !== 1) return null;
  const len = frame.readUInt16BE(1);
  if (frame.length < 3 + len + 4) return null;
  return { jobId: frame.subarray(3, 3 + len).toString('utf8'), comfyFrame: frame.subarray(3 + len) };
}
