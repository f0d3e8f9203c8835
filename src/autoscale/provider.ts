/**
 * Where GPUs come from. The autoscaler asks a provider to start an instance that runs
 * `comfy-multi worker --exit-when-idle … --name <name>` against this control plane, to stop one,
 * and to list what is still running (so an instance that ended by itself stops counting).
 * Each provider checks its own configuration when the server starts (`check`).
 */

export interface StartRequest {
  /** The worker name the instance's agent must register with (how its worker is recognised). */
  name: string;
}

export interface ProviderInstance {
  id: string;
  /** The worker name it was started with, when the provider knows it. */
  name?: string | undefined;
}

export interface Provider {
  /** `local`, `command`, ... — said by the agents it starts (`hello.ephemeral.provider`). */
  readonly name: string;
  /** What kind of GPU/image it starts; start times are measured and prices set per type. */
  readonly instanceType: string;
  /**
   * A serverless pool (replica-pool.ts): the platform names the replicas, so the autoscaler binds
   * each started slot to the next unbound worker of this provider that registers.
   */
  readonly pool?: boolean;
  /**
   * Its list may lag its start (a cloud API, the instructor's scripts): a started instance not
   * listed yet counts as ended only after a minute. Absent: the list is authoritative (local).
   */
  readonly listLags?: boolean;
  /** Fails with one sentence when the configuration cannot work (missing key, program, ...). */
  check(): Promise<void>;
  /** Asks for one instance; resolves with its id once the provider accepted (not once it registered). */
  start(req: StartRequest): Promise<ProviderInstance>;
  /** Asks the instance to stop (its agent finishes or hands back its jobs first). */
  stop(id: string): Promise<void>;
  /** Instances that exist now. */
  list(): Promise<ProviderInstance[]>;
  /** What `start` would do, for `--dry-run`, without doing it. */
  describeStart(req: StartRequest): string;
  /** Releases what the provider holds (local: its child processes are stopped). */
  close(): Promise<void>;
}

/** A provider failure worth one line on the dashboard and an alert. */
export class ProviderError extends Error {
  constructor(
    message: string,
    /** `capacity`, `quota`, `credentials`, `rate_limit`, `failed`. */
    readonly kind: 'capacity' | 'quota' | 'credentials' | 'rate_limit' | 'failed' = 'failed',
  ) {
    super(message);
    this.name = 'ProviderError';
  }
}
