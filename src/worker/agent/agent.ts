/**
 * The worker agent: one outbound WebSocket to the control plane, one WebSocket to ComfyUI, and the
 * jobs in between. Everything is event-driven: jobs arrive pushed (`assign`), ComfyUI results
 * arrive on its socket (`/history` is read only after that socket reconnects), and the only timers
 * are heartbeats, the ComfyUI health probe and reconnect backoff.
 */
import type { Logger } from 'pino';
import type { ComfyClient } from '../../comfy/comfy-client.js';
import type { ComfySocket } from '../../comfy/comfy-socket.js';
import type { ObjectInfo, OtherWsMessage, SystemStats } from '../../comfy/protocol.js';
import type { EnvSnapshot, ServerMessage } from '../protocol.js';
import {
  devicesFromStats,
  helloMessage,
  inFlightJobs,
  NO_ENV_HASH,
  type Device,
  type Hello,
} from './agent-hello.js';
import { AgentMirrors } from './agent-mirrors.js';
import type { AgentSettings, AgentStatus } from './agent-settings.js';
import { readEnvSources } from './comfy-env.js';
import { ControlLink } from './control-link.js';
import { buildEnvSnapshot, envHash } from './env-snapshot.js';
import { type ControlPlaneHttp } from './files.js';
import { LoraCache } from './lora-cache.js';
import { HealthMonitor } from './health.js';
import { IdleWatch } from './idle-watch.js';
import { JobRunner } from './job-runner.js';
import { ModelReadAhead } from './model-read-ahead.js';
import { extractModels } from '../../comfy/prompt-tools.js';
import type { ComfyPrompt } from '../../store/types.js';
import { JobTable } from './jobs.js';
import { AgentModelDownloads } from './model-downloads.js';

type Msg<T extends ServerMessage['type']> = Extract<ServerMessage, { type: T }>;

export type { AgentSettings, AgentStatus } from './agent-settings.js';

export class WorkerAgent {
  private readonly log: Logger;
  private readonly link: ControlLink;
  private readonly health: HealthMonitor;
  private readonly jobs = new JobTable();
  private readonly cp: ControlPlaneHttp;
  /** The frontend and template library copies offered to the control plane. */
  private readonly mirrors: AgentMirrors;
  private readonly runner: JobRunner;
  /** Participants' own LoRAs fetched for their jobs (see lora-cache.ts). */
  readonly loras: LoraCache;
  private readonly idle: IdleWatch | null;
  private readonly models: AgentModelDownloads;
  private readonly readAhead: ModelReadAhead;

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
  private envRefresh: Promise<void> | null = null;

  constructor(
    private readonly settings: AgentSettings,
    private readonly comfy: ComfyClient,
  ) {
    this.log = settings.logger;
    this.cp = { serverUrl: settings.serverUrl, token: settings.token };
    this.loras = new LoraCache(settings.lorasDir, this.cp, this.log);
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
        inFlight: inFlightJobs(this.jobs.all(), this.link.pendingOutcomes()),
        stopping: this.stopping,
      }),
      onWelcome: (w) => this.onWelcome(w),
      onMessage: (m) => this.onServerMessage(m),
      onRevoked: () => void this.onRevoked(),
    });
    this.mirrors = new AgentMirrors({
      cp: this.cp,
      comfyuiUrl: comfy.baseUrl,
      logger: settings.logger,
      comfyuiVersion: () => this.comfyVersion ?? 'unknown',
      mirrorFrontend: settings.mirrorFrontend,
      frontendDir: settings.frontendDir,
      frontendRetry: settings.frontendRetry,
      mirrorTemplates: settings.mirrorTemplates,
    });
    this.readAhead = new ModelReadAhead({ comfyuiUrl: comfy.baseUrl, logger: settings.logger });
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
    this.runner = new JobRunner({
      comfy,
      cp: this.cp,
      jobs: this.jobs,
      link: this.link,
      health: this.health,
      log: this.log,
      uploadConcurrency: settings.uploadConcurrency,
      uploadAttempts: settings.uploadAttempts,
      objectInfo: () => this.env?.objectInfo,
      stopping: () => this.stopping,
      onWarm: (models) => {
        this.warmModels = models;
      },
      loras: this.loras,
      earlyOutputs: () => this.earlyOutputs,
      outputDir: settings.outputDir ?? null,
    });
    this.models = new AgentModelDownloads({
      modelsDir: settings.modelsDir ?? null,
      send: (m) => this.link.send(m),
      log: this.log,
      onLanded: () => this.modelLanded(),
      ...(settings.modelProgressMs !== undefined ? { progressMs: settings.modelProgressMs } : {}),
      freeBytes: settings.freeDiskBytes,
      retryDelayMs: settings.modelRetryDelayMs,
    });
    const { exitWhenIdleMs, onIdle } = settings;
    this.idle =
      exitWhenIdleMs && onIdle
        ? new IdleWatch({
            idleMs: exitWhenIdleMs,
            busy: () => this.jobs.size > 0 || this.link.pendingOutcomes().length > 0 || this.models.busy,
            onIdle: () => {
              if (this.stopping) return;
              this.log.info({ idleMs: exitWhenIdleMs }, 'no job for the idle limit; leaving');
              onIdle();
            },
          })
        : null;
  }

  start(): void {
    this.health.start();
    this.idle?.start();
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
      idleMs: this.idle ? this.idle.idleForMs() : null,
      ...this.mirrors.status(),
      readAhead: this.readAhead.status(),
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
        .map((j) => this.runner.giveBack(j, 'worker stopping')),
    );
    await this.jobs.whenEmpty(graceMs);
    await Promise.all(this.jobs.all().map((j) => this.runner.giveBack(j, 'worker stopping')));
    this.stopped = true;
    this.models.stop();
    this.idle?.stop();
    this.health.stop();
    await this.readAhead.stop();
    await this.mirrors.stop();
    await this.closeSocket();
    // Give the last reports a moment to be acknowledged, so a job that finished during the grace
    // period is recorded as done rather than run again after its lease lapses.
    await this.link.whenAcknowledged(Math.min(5000, Math.max(1000, graceMs)));
    await this.link.stop();
    this.log.info('agent stopped');
  }

  /**
   * The token was revoked. The control plane already gave our jobs back to the queue (uncounted),
   * so make sure ComfyUI runs none of them, forget their reports and stop.
   */
  private async onRevoked(): Promise<void> {
    this.log.error(
      { held: this.jobs.size },
      'worker token revoked: dropping every job (the control plane requeued them) and stopping',
    );
    this.link.clearOutbox();
    await Promise.all(this.jobs.all().map((j) => this.runner.abandon(j, 'worker token revoked')));
    this.settings.onRevoked?.();
  }

  // ---- control plane -----------------------------------------------------------------------

  private reportHealthy(): boolean {
    return this.health.isHealthy && this.env !== null;
  }

  private hello(): Hello {
    this.helloHash = this.env?.hash ?? NO_ENV_HASH;
    return helloMessage({
      settings: this.settings,
      comfyVersion: this.comfyVersion,
      devices: this.devices,
      envHash: this.helloHash,
      inFlight: inFlightJobs(this.jobs.all(), this.link.pendingOutcomes()),
      warmModels: this.warmModels,
      healthy: this.reportHealthy(),
      stopping: this.stopping,
      models: this.models,
    });
  }

  /** The server serves outputs still on their way (`welcome.earlyOutputs`): announce them at once. */
  private earlyOutputs = false;

  private onWelcome(w: Msg<'welcome'>): void {
    this.earlyOutputs = w.earlyOutputs === true;
    // In the background: the frontend mirror never holds up jobs.
    this.mirrors.setWanted(w);
    // So is the warm-up: the waiting jobs' models, read into the page cache while the disk is idle.
    if (w.warmup?.length && !this.stopping) this.readAhead.want(w.warmup);
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
        void this.runner.abandon(job, 'forgotten by the control plane');
      }
    }
  }

  private onServerMessage(m: Exclude<ServerMessage, Msg<'welcome'>>): void {
    switch (m.type) {
      case 'assign':
        // A job queued behind a running one: its models are read ahead while the GPU works.
        if (this.jobs.size > 0 && !this.stopping)
          this.readAhead.want(extractModels(m.job.prompt as ComfyPrompt));
        return this.runner.onAssign(m);
      case 'cancel':
        void this.runner.onCancel(m.jobId, m.attempt);
        return;
      case 'release':
        void this.runner.onRelease(m.jobId, m.attempt);
        return;
      case 'drain':
        this.draining = m.draining;
        this.log.info({ draining: m.draining }, m.draining ? 'draining: no new jobs' : 'no longer draining');
        return;
      case 'error':
        this.log.warn({ code: m.code, message: m.message }, 'control plane reported an error');
        return;
      case 'model_download':
        return this.models.start(m);
      case 'model_download_cancel':
        return this.models.cancel(m.downloadId);
    }
  }

  /**
   * A model file landed in ComfyUI's models folder: re-read the environment and, when it changed,
   * send it at once (an unasked `env`), so the control plane's submit check and model lists know
   * the file without this worker reconnecting.
   */
  private async modelLanded(): Promise<void> {
    await this.refreshEnv();
    const env = this.env;
    if (!env || env.hash === this.helloHash) return;
    if (this.link.send({ type: 'env', hash: env.hash, snapshot: env.snapshot })) {
      this.helloHash = env.hash;
      this.log.info({ hash: env.hash }, 'sent the ComfyUI environment after a model download');
    }
  }

  // ---- ComfyUI health and socket -------------------------------------------------------------

  private takeStats(stats: SystemStats): void {
    this.comfyVersion = stats.system.comfyui_version;
    this.devices = devicesFromStats(stats);
  }

  private onComfyHealthy(stats: SystemStats): void {
    this.takeStats(stats);
    this.log.info({ comfyui: this.comfy.baseUrl, version: this.comfyVersion }, 'ComfyUI is answering');
    this.openSocket();
    void this.refreshEnv().then(() => {
      this.afterEnvRefresh();
      void this.runner.sweepBuried();
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
    this.mirrors.setComfyHealthy(this.health.isHealthy && this.env !== null);
  }

  private onComfyUnhealthy(reason: string): void {
    this.mirrors.setComfyHealthy(false);
    this.log.error(
      { comfyui: this.comfy.baseUrl, reason },
      'ComfyUI stopped answering; handing back its jobs',
    );
    for (const job of this.jobs.all()) void this.runner.giveBack(job, 'comfyui_unreachable');
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
      if (reconnect) void this.runner.recoverAfterSocketGap();
    });
    socket.on('message', (m, pid) => {
      if (this.socket === socket) this.runner.onComfyMessage(m, pid);
    });
    socket.on('other', (m) => {
      if (this.socket === socket) this.runner.onComfyMessage(m, promptIdOfOther(m));
    });
    socket.on('binary', (frame, pid, raw) => {
      if (this.socket === socket) this.runner.onComfyBinary(frame, pid, raw);
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
}

function promptIdOfOther(m: OtherWsMessage): string | null {
  const d = m.data as { prompt_id?: unknown } | null | undefined;
  return d && typeof d === 'object' && typeof d.prompt_id === 'string' ? d.prompt_id : null;
}
