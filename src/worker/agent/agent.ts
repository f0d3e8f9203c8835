/**
 * The worker agent: one outbound WebSocket to the control plane, one WebSocket to ComfyUI, and the
 * jobs in between. Everything is event-driven: jobs arrive pushed (`assign`), ComfyUI results
 * arrive on its socket (`/history` is read only after that socket reconnects), and the only timers
 * are heartbeats, the ComfyUI health probe and reconnect backoff.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { ComfyClient } from '../../comfy/comfy-client.js';
import { ComfyPromptError } from '../../comfy/client-errors.js';
import type { ComfySocket } from '../../comfy/comfy-socket.js';
import { jobErrorFromOutcome, outcomeFromHistory } from '../../comfy/prompt-outcome.js';
import type {
  ApiPrompt,
  BinaryFrame,
  ComfyWsMessage,
  HistoryEntry,
  ObjectInfo,
  OtherWsMessage,
  SystemStats,
} from '../../comfy/protocol.js';
import {
  extractModels,
  inputReferences,
  outputsFromExecuted,
  rewriteInputs,
  rewriteOutputPrefixes,
} from '../../comfy/prompt-tools.js';
import type { ComfyPrompt, JobError, JobOutput } from '../../store/types.js';
import { VERSION } from '../../version.js';
import {
  encodePreviewFrame,
  PROTOCOL_VERSION,
  type AgentMessage,
  type EnvSnapshot,
  type ServerMessage,
} from '../protocol.js';
import { backoffDelay, type BackoffOptions } from './backoff.js';
import { isUnreachable, readEnvSources } from './comfy-env.js';
import { ControlLink } from './control-link.js';
import { buildEnvSnapshot, envHash } from './env-snapshot.js';
import { confineReference, transferInput, transferOutput, type ControlPlaneHttp } from './files.js';
import { FrontendMirror, type FrontendStatus } from './frontend-mirror.js';
import { HealthMonitor } from './health.js';
import { HttpError } from './http-stream.js';
import { JobTable, type AgentJob } from './jobs.js';

type Msg<T extends ServerMessage['type']> = Extract<ServerMessage, { type: T }>;
type Device = Extract<AgentMessage, { type: 'hello' }>['devices'][number];
type InFlight = Extract<AgentMessage, { type: 'hello' }>['inFlight'][number];

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
  /** The copy of the ComfyUI web frontend offered to the control plane. */
  frontend: FrontendStatus;
  jobs: { jobId: string; attempt: number; user: string; promptId: string; state: AgentJob['state'] }[];
}

/** A placeholder env hash for a hello sent before ComfyUI ever answered. */
const NO_ENV_HASH = '0'.repeat(64);
const MAX_IN_FLIGHT = 16;

export class WorkerAgent {
  private readonly log: Logger;
  private readonly link: ControlLink;
  private readonly health: HealthMonitor;
  private readonly jobs = new JobTable();
  private readonly cp: ControlPlaneHttp;
  private readonly frontend: FrontendMirror | null;

  private env: { hash: string; snapshot: EnvSnapshot; objectInfo: ObjectInfo } | null = null;
  /** The env hash the current control connection's hello announced. */
  private helloHash: string | null = null;
  private comfyVersion: string | null = null;
  private devices: Device[] = [];
  private warmModels: string[] = [];
  private draining = false;
  private stopping = false;
  private stopped = false;
  private linkStarted = false;

  private socket: ComfySocket | null = null;
  /** A socket has been open before: the next open is a reconnect (events may have been missed). */
  private socketWasOpen = false;
  /** Serialises preparing and queueing, so ComfyUI's queue keeps the order jobs were assigned in. */
  private queueChain: Promise<void> = Promise.resolve();
  private envRefresh: Promise<void> | null = null;

  constructor(
    private readonly settings: AgentSettings,
    private readonly comfy: ComfyClient,
  ) {
    this.log = settings.logger;
    this.cp = { serverUrl: settings.serverUrl, token: settings.token };
    this.link = new ControlLink({
      serverUrl: settings.serverUrl,
      token: settings.token,
      logger: settings.logger,
      backoff: settings.backoff,
      hello: () => this.hello(),
      heartbeat: () => ({
        type: 'heartbeat',
        healthy: this.reportHealthy(),
        devices: this.devices,
        inFlight: this.inFlight(),
        stopping: this.stopping,
      }),
      onWelcome: (w) => this.onWelcome(w),
      onMessage: (m) => this.onServerMessage(m),
    });
    this.frontend = settings.mirrorFrontend
      ? new FrontendMirror({
          cp: this.cp,
          comfyuiUrl: comfy.baseUrl,
          frontendDir: settings.frontendDir,
          logger: settings.logger,
          comfyuiVersion: () => this.comfyVersion ?? 'unknown',
          ...(settings.frontendRetry ? { failureBackoff: settings.frontendRetry } : {}),
        })
      : null;
    this.health = new HealthMonitor({
      probe: (timeoutMs) => this.comfy.systemStats({ timeoutMs }),
      logger: settings.logger,
      intervalMs: settings.probeIntervalMs,
      timeoutMs: settings.probeTimeoutMs,
      failuresToUnhealthy: settings.failuresToUnhealthy,
      onHealthy: (stats) => this.onComfyHealthy(stats),
      onUnhealthy: (reason) => this.onComfyUnhealthy(reason),
      onStats: (stats) => {
        this.takeStats(stats);
        // Reading the environment failed earlier (ComfyUI still starting?): try again.
        if (this.health.isHealthy && !this.env && !this.envRefresh && !this.stopping)
          void this.refreshEnv().then(() => this.afterEnvRefresh());
      },
    });
  }

  start(): void {
    this.health.start();
  }

  status(): AgentStatus {
    return {
      name: this.settings.name,
      workerId: this.link.status().workerId,
      control: this.link.status(),
      comfyui: {
        url: this.comfy.baseUrl,
        healthy: this.health.isHealthy,
        version: this.comfyVersion,
        lastError: this.health.error,
        socketOpen: this.socket?.connected ?? false,
      },
      envHash: this.env?.hash ?? null,
      draining: this.draining,
      stopping: this.stopping,
      frontend: this.frontend?.status() ?? {
        state: 'disabled',
        versionId: null,
        frontendVersion: null,
        files: null,
        lastError: null,
      },
      jobs: this.jobs.all().map((j) => ({
        jobId: j.jobId,
        attempt: j.attempt,
        user: j.user,
        promptId: j.promptId,
        state: j.state,
      })),
    };
  }

  /**
   * Stops taking jobs and gives back those ComfyUI has not started; a running job may finish for
   * up to `graceMs`, then it is interrupted and given back too. Calling again with a shorter grace
   * cuts the wait.
   */
  async stop(opts: { graceMs?: number } = {}): Promise<void> {
    const graceMs = opts.graceMs ?? 0;
    if (this.stopping) {
      if (graceMs === 0) this.jobs.cutWaits();
      return this.stopDone;
    }
    this.stopping = true;
    this.stopDone = this.doStop(graceMs);
    return this.stopDone;
  }

  private stopDone: Promise<void> = Promise.resolve();

  private async doStop(graceMs: number): Promise<void> {
    // `stopping: true` in heartbeats stops new assignments while the server keeps renewing the
    // leases of what we hold, so a running job may use the whole grace period (a long video).
    this.log.info({ graceMs, held: this.jobs.size }, 'agent stopping');
    this.link.beat(); // stopping from now on, so no new work is sent
    await Promise.all(
      this.jobs
        .all()
        .filter((j) => j.state === 'preparing' || j.state === 'queued')
        .map((j) => this.giveBack(j, 'worker stopping')),
    );
    await this.jobs.whenEmpty(graceMs);
    await Promise.all(this.jobs.all().map((j) => this.giveBack(j, 'worker stopping')));
    this.stopped = true;
    this.health.stop();
    await this.frontend?.stop();
    await this.closeSocket();
    await this.link.stop();
    this.log.info('agent stopped');
  }

  // ---- control plane -----------------------------------------------------------------------

  private reportHealthy(): boolean {
    return this.health.isHealthy && this.env !== null;
  }

  private hello(): Extract<AgentMessage, { type: 'hello' }> {
    this.helloHash = this.env?.hash ?? NO_ENV_HASH;
    return {
      type: 'hello',
      protocol: PROTOCOL_VERSION,
      name: this.settings.name,
      agentVersion: VERSION,
      comfyuiVersion: (this.comfyVersion ?? 'unknown').slice(0, 64),
      devices: this.devices,
      envHash: this.helloHash,
      prefetch: this.settings.prefetch,
      inFlight: this.inFlight(),
      warmModels: this.warmModels.slice(0, 256),
      healthy: this.reportHealthy(),
      stopping: this.stopping,
    };
  }

  /** Jobs held, plus finished ones whose report waits for the connection (still leased to us). */
  private inFlight(): InFlight[] {
    const out: InFlight[] = this.jobs.all().map((j) => ({
      jobId: j.jobId,
      attempt: j.attempt,
      state: j.state === 'running' || j.state === 'finishing' ? 'running' : 'queued',
    }));
    for (const m of this.link.pendingOutcomes()) {
      if (!out.some((o) => o.jobId === m.jobId && o.attempt === m.attempt)) {
        out.push({ jobId: m.jobId, attempt: m.attempt, state: 'running' });
      }
    }
    return out.slice(0, MAX_IN_FLIGHT);
  }

  private onWelcome(w: Msg<'welcome'>): void {
    // In the background: the frontend mirror never holds up jobs.
    this.frontend?.setWanted(w.mirrorFrontend === true);
    if (w.needEnv && this.env && this.helloHash === this.env.hash) {
      this.link.send({ type: 'env', hash: this.env.hash, snapshot: this.env.snapshot });
      this.log.info({ hash: this.env.hash }, 'uploaded the ComfyUI environment snapshot');
    }
    for (const f of w.forget) {
      const job = this.jobs.get(f.jobId, f.attempt);
      if (job) {
        this.log.warn(
          { jobId: f.jobId, attempt: f.attempt },
          'the control plane no longer gives us this job; dropping it',
        );
        void this.abandon(job, 'forgotten by the control plane');
      }
    }
  }

  private onServerMessage(m: Exclude<ServerMessage, Msg<'welcome'>>): void {
    switch (m.type) {
      case 'assign':
        return this.onAssign(m);
      case 'cancel':
        void this.onCancel(m.jobId, m.attempt);
        return;
      case 'release':
        void this.onRelease(m.jobId, m.attempt);
        return;
      case 'drain':
        this.draining = m.draining;
        this.log.info({ draining: m.draining }, m.draining ? 'draining: no new jobs' : 'no longer draining');
        return;
      case 'error':
        this.log.warn({ code: m.code, message: m.message }, 'control plane reported an error');
        return;
    }
  }

  // ---- assign → ComfyUI queue ----------------------------------------------------------------

  private onAssign(m: Msg<'assign'>): void {
    const a = m.job;
    if (this.jobs.get(a.jobId, a.attempt)) return; // duplicate
    const job: AgentJob = {
      jobId: a.jobId,
      attempt: a.attempt,
      user: a.user,
      prompt: a.prompt as ComfyPrompt,
      extraData: a.extraData,
      front: a.front,
      promptId: randomUUID(),
      state: 'preparing',
      outputs: new Map(),
      abort: new AbortController(),
      assignedAt: performance.now(),
      startedAt: null,
      models: [],
    };
    this.jobs.add(job);
    this.log.debug({ jobId: job.jobId, attempt: job.attempt, promptId: job.promptId }, 'job assigned');
    if (this.stopping) {
      void this.giveBack(job, 'worker stopping');
      return;
    }
    if (!this.health.isHealthy) {
      void this.giveBack(job, 'comfyui_unreachable');
      return;
    }
    this.queueChain = this.queueChain.then(() => this.prepareAndQueue(job));
  }

  private async prepareAndQueue(job: AgentJob): Promise<void> {
    if (!this.jobs.holds(job)) return;
    const signal = job.abort.signal;
    const objectInfo = this.env?.objectInfo;
    try {
      const ns = { user: job.user, jobId: job.jobId, ...(objectInfo ? { objectInfo } : {}) };
      let prompt = rewriteOutputPrefixes(job.prompt, ns).prompt;
      // Known loaders only: cheap, and all warmModels needs (the server computes its own list).
      job.models = extractModels(prompt);
      const refs = inputReferences(prompt, objectInfo);
      if (refs.length > 0) {
        // Every file reference ends up inside the user's own part of ComfyUI's folders.
        const mapping = new Map<string, string>();
        for (const ref of refs) {
          if (mapping.has(ref.value)) continue;
          if (ref.type === 'input')
            mapping.set(ref.value, await transferInput(this.comfy, this.cp, job, ref, signal));
          else mapping.set(ref.value, confineReference(ref, job.user));
          if (!this.jobs.holds(job)) return;
        }
        prompt = rewriteInputs(prompt, mapping, objectInfo).prompt;
      }
      if (!this.jobs.holds(job)) return;
      job.state = 'queued';
      const res = await this.comfy.queuePrompt(prompt as ApiPrompt, {
        promptId: job.promptId,
        extraData: withoutClientId(job.extraData),
        ...(job.front ? { front: true } : {}),
      });
      if (res.prompt_id !== job.promptId) this.jobs.rekey(job, res.prompt_id);
      if (Object.keys(res.node_errors).length > 0) {
        this.log.warn(
          { jobId: job.jobId, nodeErrors: Object.keys(res.node_errors) },
          'ComfyUI dropped some output nodes that failed validation',
        );
      }
      this.log.debug(
        { jobId: job.jobId, promptId: job.promptId, number: res.number },
        'job queued in ComfyUI',
      );
    } catch (err) {
      if (!this.jobs.holds(job)) return;
      if (err instanceof ComfyPromptError) {
        this.fail(job, { reason: 'invalid_prompt', message: err.message, details: { ...err.body } });
      } else if (err instanceof HttpError) {
        // The control plane failed to hand over an input.
        if (err.status === 403 || err.status === 409)
          this.drop(job, `control plane refused input download (${err.status})`);
        else if (err.transient) await this.giveBack(job, 'input download failed; retry elsewhere');
        else
          this.fail(job, {
            reason: 'input_failed',
            message: `${err.message}${err.body ? `: ${err.body.slice(0, 500)}` : ''}`,
          });
      } else if (isUnreachable(err)) {
        this.health.suspect((err as Error).message);
        await this.giveBack(job, 'comfyui_unreachable');
      } else {
        this.log.error({ err, jobId: job.jobId }, 'preparing the job failed');
        this.fail(job, { reason: 'agent_error', message: (err as Error).message ?? String(err) });
      }
    }
  }

  // ---- ComfyUI events ------------------------------------------------------------------------

  private onComfyMessage(msg: ComfyWsMessage | OtherWsMessage, pid: string | null): void {
    if (pid === null) return; // status, feature_flags, ...
    const job = this.jobs.byPromptId(pid);
    if (!job) {
      if (msg.type === 'execution_start' && this.jobs.isBuried(pid)) {
        this.log.info({ promptId: pid }, 'ComfyUI started a prompt we gave up; interrupting it');
        this.comfy.interrupt(pid).catch(() => undefined);
      }
      return;
    }
    if (msg.type === 'execution_start') this.markStarted(job);
    this.link.send({
      type: 'job_event',
      jobId: job.jobId,
      attempt: job.attempt,
      event: { type: msg.type, data: msg.data },
    });
    const m = msg as ComfyWsMessage;
    switch (m.type) {
      case 'executed':
        for (const out of outputsFromExecuted(m.data))
          job.outputs.set(`${out.type}/${out.subfolder}/${out.filename}`, out);
        return;
      case 'execution_success':
        void this.finish(job);
        return;
      case 'execution_error':
        this.fail(
          job,
          jobErrorFromOutcome({ status: 'error', promptId: pid, error: m.data, source: 'socket' })!,
        );
        return;
      case 'execution_interrupted':
        this.fail(job, {
          ...jobErrorFromOutcome({
            status: 'interrupted',
            promptId: pid,
            interrupted: m.data,
            source: 'socket',
          })!,
          message:
            'ComfyUI interrupted the job (an interrupt on the GPU machine, not a cancel from comfy-multi).',
        });
        return;
      default:
        return;
    }
  }

  private markStarted(job: AgentJob): void {
    if (job.state !== 'queued' && job.state !== 'preparing') return;
    job.state = 'running';
    job.startedAt = performance.now();
    if (job.models.length > 0) this.warmModels = job.models;
    this.link.send({ type: 'job_started', jobId: job.jobId, attempt: job.attempt });
  }

  /** Binary frames (previews, progress text) of a running job, relayed unchanged and tagged with its id. */
  private onComfyBinary(_frame: BinaryFrame, pid: string | null, raw: Buffer): void {
    const job = pid ? this.jobs.byPromptId(pid) : undefined;
    if (!job || job.state !== 'running') return;
    this.link.sendBinary(encodePreviewFrame(job.jobId, raw));
  }

  // ---- outcomes ------------------------------------------------------------------------------

  /** ComfyUI finished the prompt: upload the outputs, then report completion. */
  private async finish(job: AgentJob): Promise<void> {
    if (!this.jobs.holds(job)) return;
    job.state = 'finishing';
    const outputs = [...job.outputs.values()];
    try {
      const stored = await this.uploadAll(job, outputs);
      if (!this.jobs.holds(job)) return;
      this.jobs.remove(job);
      this.link.sendOutcome({
        type: 'job_completed',
        jobId: job.jobId,
        attempt: job.attempt,
        outputs: stored,
      });
      this.log.info({ jobId: job.jobId, attempt: job.attempt, outputs: stored.length }, 'job completed');
    } catch (err) {
      if (!this.jobs.holds(job)) return;
      if (err instanceof HttpError && (err.status === 403 || err.status === 404 || err.status === 409)) {
        this.drop(job, `control plane refused the upload (${err.status}); the job is no longer ours`);
      } else if (isUnreachable(err)) {
        this.health.suspect((err as Error).message);
        await this.giveBack(job, 'comfyui_unreachable');
      } else {
        this.fail(job, {
          reason: 'upload_failed',
          message: `Uploading the job's outputs failed: ${(err as Error).message}`,
        });
      }
    }
  }

  private async uploadAll(job: AgentJob, outputs: JobOutput[]): Promise<JobOutput[]> {
    const stored: JobOutput[] = new Array<JobOutput>(outputs.length);
    let next = 0;
    const worker = async () => {
      while (next < outputs.length) {
        const i = next++;
        stored[i] = await this.uploadOne(job, outputs[i]!);
      }
    };
    const n = Math.max(1, Math.min(this.settings.uploadConcurrency, outputs.length));
    await Promise.all(Array.from({ length: n }, worker));
    return stored;
  }

  private async uploadOne(job: AgentJob, out: JobOutput): Promise<JobOutput> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await transferOutput(this.comfy, this.cp, job, out, job.abort.signal);
      } catch (err) {
        // Only the control plane's side is retried here; a ComfyUI failure is handled by the caller.
        const retry =
          !job.abort.signal.aborted &&
          attempt + 1 < this.settings.uploadAttempts &&
          err instanceof HttpError &&
          err.transient;
        if (!retry) throw err;
        const delay = backoffDelay(attempt, { baseMs: 200, maxMs: 5000 });
        this.log.warn(
          { jobId: job.jobId, file: out.filename, err: (err as Error).message, retryInMs: delay },
          'output upload failed; retrying',
        );
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  private fail(job: AgentJob, error: JobError): void {
    if (!this.jobs.holds(job)) return;
    this.jobs.remove(job, 'failed');
    this.link.sendOutcome({
      type: 'job_failed',
      jobId: job.jobId,
      attempt: job.attempt,
      error: clampError(error),
    });
    this.log.warn(
      { jobId: job.jobId, attempt: job.attempt, reason: error.reason, message: error.message.slice(0, 300) },
      'job failed',
    );
  }

  /** Stops holding a job without reporting it (the control plane already moved on). */
  private drop(job: AgentJob, why: string): void {
    this.jobs.remove(job, why);
    this.log.info({ jobId: job.jobId, attempt: job.attempt, why }, 'job dropped');
  }

  /**
   * Hands a job back to the queue (`job_released`) and makes sure ComfyUI does not run it: out of
   * its queue if queued, interrupted if running. ComfyUI may be unreachable; the prompt id stays
   * buried so it is cleaned up when ComfyUI answers again.
   */
  private async giveBack(job: AgentJob, reason: string): Promise<void> {
    if (!this.jobs.holds(job)) return;
    const state = job.state;
    this.jobs.remove(job, reason);
    this.link.sendOutcome({ type: 'job_released', jobId: job.jobId, attempt: job.attempt, reason });
    this.log.info({ jobId: job.jobId, attempt: job.attempt, state, reason }, 'job handed back');
    if (this.health.isHealthy) await this.purgeFromComfy(job.promptId, state);
  }

  /** Stops holding a job the server forgot, making sure ComfyUI does not run it. */
  private async abandon(job: AgentJob, reason: string): Promise<void> {
    const state = job.state;
    this.jobs.remove(job, reason);
    if (this.health.isHealthy) await this.purgeFromComfy(job.promptId, state);
  }

  private async purgeFromComfy(promptId: string, state: AgentJob['state']): Promise<void> {
    try {
      if (state === 'queued' || state === 'preparing') await this.comfy.deleteFromQueue([promptId]);
      // Targeted: a no-op unless this very prompt is running (covers a start we have not seen yet).
      if (state !== 'finishing') await this.comfy.interrupt(promptId);
    } catch (err) {
      this.log.debug({ promptId, err: (err as Error).message }, 'could not remove a prompt from ComfyUI');
    }
  }

  private async onCancel(jobId: string, attempt: number): Promise<void> {
    const job = this.jobs.get(jobId, attempt);
    if (job) {
      const state = job.state;
      this.jobs.remove(job, 'cancelled');
      if (this.health.isHealthy) await this.purgeFromComfy(job.promptId, state);
      this.log.info({ jobId, attempt, state }, 'job cancelled');
    }
    // Confirm even when we no longer hold it: the control plane frees the slot on this answer.
    this.link.sendOutcome({ type: 'job_cancelled', jobId, attempt });
  }

  private async onRelease(jobId: string, attempt: number): Promise<void> {
    const job = this.jobs.get(jobId, attempt);
    if (!job || (job.state !== 'queued' && job.state !== 'preparing')) return; // started: keep it
    if (job.state === 'preparing') return this.giveBack(job, 'released on request');
    try {
      await this.comfy.deleteFromQueue([job.promptId]);
      if (!this.jobs.holds(job) || job.state !== 'queued') return;
      // ComfyUI may have taken it off its queue to run it a moment ago.
      const q = await this.comfy.getQueue();
      if (!this.jobs.holds(job) || job.state !== 'queued') return;
      if (q.queue_running.some((item) => item[1] === job.promptId)) {
        this.markStarted(job);
        return;
      }
      await this.giveBack(job, 'released on request');
    } catch (err) {
      this.log.warn(
        { jobId, err: (err as Error).message },
        'could not take a prefetched job back from ComfyUI; keeping it',
      );
    }
  }

  // ---- ComfyUI health and socket -------------------------------------------------------------

  private takeStats(stats: SystemStats): void {
    this.comfyVersion = stats.system.comfyui_version;
    this.devices = stats.devices.slice(0, 64).map((d) => ({
      name: d.name.slice(0, 256),
      type: d.type.slice(0, 64),
      vramTotal: Math.max(0, d.vram_total),
      vramFree: Math.max(0, d.vram_free),
    }));
  }

  private onComfyHealthy(stats: SystemStats): void {
    this.takeStats(stats);
    this.log.info({ comfyui: this.comfy.baseUrl, version: this.comfyVersion }, 'ComfyUI is answering');
    this.openSocket();
    void this.refreshEnv().then(() => {
      this.afterEnvRefresh();
      void this.sweepBuried();
    });
  }

  /** Connects, re-registers (the environment changed) or just tells the server we are healthy. */
  private afterEnvRefresh(): void {
    if (this.stopped) return;
    if (!this.linkStarted) {
      this.linkStarted = true;
      this.link.start();
    } else if (this.env && this.helloHash !== null && this.helloHash !== this.env.hash) {
      this.log.info('ComfyUI environment changed; registering again');
      this.link.reconnectNow();
    } else {
      this.link.beat();
    }
    this.frontend?.setComfyHealthy(this.health.isHealthy && this.env !== null);
  }

  private onComfyUnhealthy(reason: string): void {
    this.frontend?.setComfyHealthy(false);
    this.log.error(
      { comfyui: this.comfy.baseUrl, reason },
      'ComfyUI stopped answering; handing back its jobs',
    );
    for (const job of this.jobs.all()) void this.giveBack(job, 'comfyui_unreachable');
    if (!this.linkStarted) {
      this.linkStarted = true;
      this.link.start();
    } else {
      this.link.beat();
    }
  }

  private refreshEnv(): Promise<void> {
    this.envRefresh ??= (async () => {
      try {
        const sources = await readEnvSources(this.comfy);
        const snapshot = buildEnvSnapshot(sources);
        const hash = envHash(snapshot);
        if (this.env?.hash !== hash) {
          const objectInfo = sources.objectInfo as ObjectInfo;
          this.env = { hash, snapshot, objectInfo };
          this.log.info({ hash, nodes: Object.keys(objectInfo).length }, 'read the ComfyUI environment');
        }
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, 'reading the ComfyUI environment failed');
        this.health.suspect((err as Error).message);
      }
    })().finally(() => {
      this.envRefresh = null;
    });
    return this.envRefresh;
  }

  /** After ComfyUI comes back: make sure no prompt we gave up still waits or runs there. */
  private async sweepBuried(): Promise<void> {
    const buried = this.jobs.buried();
    if (buried.length === 0) return;
    try {
      const q = await this.comfy.getQueue();
      const ids = new Set(buried);
      const pending = q.queue_pending.map((i) => i[1]).filter((id) => ids.has(id));
      if (pending.length > 0) await this.comfy.deleteFromQueue(pending);
      for (const item of q.queue_running) if (ids.has(item[1])) await this.comfy.interrupt(item[1]);
    } catch (err) {
      this.log.debug({ err: (err as Error).message }, 'could not sweep given-up prompts');
    }
  }

  /**
   * The one ComfyUI WebSocket. It reconnects by itself (same client id, so ComfyUI keeps routing
   * our prompts' messages to it); when ComfyUI comes back after an outage a fresh one is opened
   * at once instead of waiting out the backoff.
   */
  private openSocket(): void {
    if (this.stopped) return;
    if (this.socket?.connected) return;
    if (this.socket) void this.closeSocket();
    const socket = this.comfy.openSocket({
      reconnect: { initialDelayMs: 100, maxDelayMs: 2000 },
      heartbeatMs: 10_000,
    });
    this.socket = socket;
    socket.on('open', () => {
      if (this.socket !== socket) return;
      const reconnect = this.socketWasOpen;
      this.socketWasOpen = true;
      this.log.debug({ reconnect }, 'ComfyUI WebSocket open');
      if (reconnect) void this.recoverAfterSocketGap();
    });
    socket.on('message', (m, pid) => {
      if (this.socket === socket) this.onComfyMessage(m, pid);
    });
    socket.on('other', (m) => {
      if (this.socket === socket) this.onComfyMessage(m, promptIdOfOther(m));
    });
    socket.on('binary', (frame, pid, raw) => {
      if (this.socket === socket) this.onComfyBinary(frame, pid, raw);
    });
    socket.on('error', (err) => this.log.debug({ err: err.message }, 'ComfyUI WebSocket error'));
    socket.on('close', (info) => {
      if (this.socket !== socket || this.stopped || !info.willReconnect) return;
      this.log.warn({ code: info.code }, 'ComfyUI WebSocket closed; reconnecting');
      this.health.suspect('ComfyUI WebSocket closed');
    });
  }

  private async closeSocket(): Promise<void> {
    const s = this.socket;
    this.socket = null;
    await s?.close();
  }

  /**
   * The ComfyUI socket was down for a while, so events may be lost. For each job ComfyUI holds,
   * look it up: finished ones are completed from `/history`; ones still queued or running carry on.
   */
  private async recoverAfterSocketGap(): Promise<void> {
    const held = this.jobs.all().filter((j) => j.state === 'queued' || j.state === 'running');
    if (held.length === 0) return;
    try {
      const q = await this.comfy.getQueue();
      for (const job of held) {
        if (!this.jobs.holds(job)) continue;
        const running = q.queue_running.some((i) => i[1] === job.promptId);
        const pending = q.queue_pending.some((i) => i[1] === job.promptId);
        if (running) {
          this.markStarted(job);
          continue;
        }
        if (pending) continue;
        const history = await this.comfy.history(job.promptId);
        const entry = history[job.promptId];
        if (!this.jobs.holds(job)) continue;
        if (!entry) {
          await this.giveBack(job, 'ComfyUI lost the prompt (restarted?)');
          continue;
        }
        this.settleFromHistory(job, entry);
      }
    } catch (err) {
      this.log.warn(
        { err: (err as Error).message },
        'could not reconcile jobs after the ComfyUI socket reconnected',
      );
      this.health.suspect((err as Error).message);
    }
  }

  private settleFromHistory(job: AgentJob, entry: HistoryEntry): void {
    const outcome = outcomeFromHistory(job.promptId, entry);
    this.log.info({ jobId: job.jobId, outcome: outcome.status }, 'settled a job from ComfyUI history');
    if (outcome.status !== 'success') return this.fail(job, jobErrorFromOutcome(outcome)!);
    if (job.state === 'queued') this.markStarted(job);
    for (const out of outcome.outputs) job.outputs.set(`${out.type}/${out.subfolder}/${out.filename}`, out);
    void this.finish(job);
  }
}

/** ComfyUI's `client_id` is the agent's; a browser's id in the job's extra_data must not leak in. */
function withoutClientId(extra: Record<string, unknown>): Record<string, unknown> {
  const { client_id: _drop, ...rest } = extra;
  return rest;
}

function promptIdOfOther(m: OtherWsMessage): string | null {
  const d = m.data as { prompt_id?: unknown } | null | undefined;
  return d && typeof d === 'object' && typeof d.prompt_id === 'string' ? d.prompt_id : null;
}

/** Keeps a JobError inside the protocol's limits. */
function clampError(e: JobError): JobError {
  const out: JobError = { ...e, reason: e.reason.slice(0, 64), message: e.message.slice(0, 20_000) };
  if (e.nodeId) out.nodeId = e.nodeId.slice(0, 64);
  if (e.nodeType) out.nodeType = e.nodeType.slice(0, 256);
  if (e.exceptionType) out.exceptionType = e.exceptionType.slice(0, 256);
  if (e.traceback) out.traceback = e.traceback.slice(-500).map((l) => l.slice(0, 20_000));
  return out;
}
