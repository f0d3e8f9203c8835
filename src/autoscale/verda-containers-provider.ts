/**
 * The `verda-containers` provider: a Verda serverless container deployment whose replicas run the
 * GPU image (deploy/gpu/Dockerfile) as ephemeral agents. The autoscaler sets the deployment's
 * `min_replica_count`; Verda's queue-based scaling stays idle because our jobs come through the
 * control plane. See replica-pool.ts for slots and binding.
 *
 * Shapes, checked against Verda's official Python SDK (DataCrunch-io/datacrunch-python:
 * verda/containers `ContainersService`, `ScalingOptions`):
 * - `GET /container-deployments/{name}/scaling` → `{min_replica_count, max_replica_count,
 *   scale_down_policy: {delay_seconds}, scale_up_policy: {delay_seconds},
 *   queue_message_ttl_seconds, concurrent_requests_per_replica, scaling_triggers: {...}}`.
 * - `PATCH /container-deployments/{name}/scaling` with the whole object: we send back what we read
 *   with only the two counts changed, so the instructor's other settings stay.
 * - authentication and errors: verda-api.ts.
 * The deployment's container sets COMFY_MULTI_SERVER, COMFY_MULTI_TOKEN (a Verda secret),
 * WORKER_PROVIDER=verda-containers and WORKER_EXIT_WHEN_IDLE_SECONDS (docs/gpu-hosts.md).
 */
import { ProviderError } from './provider.js';
import { ReplicaPoolProvider, type PoolScale } from './replica-pool.js';
import { VerdaApi, type VerdaApiOptions } from './verda-api.js';

export interface VerdaContainersOptions extends VerdaApiOptions {
  deployment: string;
  /** Label for start times and prices (AUTOSCALE_INSTANCE_TYPE), default `verda-containers`. */
  instanceType: string;
}

export class VerdaContainersProvider extends ReplicaPoolProvider {
  readonly name = 'verda-containers';
  readonly instanceType: string;
  private readonly api: VerdaApi;
  /** The last scaling object read, sent back whole with new counts. */
  private scaling: Record<string, unknown> = {};

  constructor(private readonly opts: VerdaContainersOptions) {
    super();
    this.instanceType = opts.instanceType;
    this.api = new VerdaApi(opts);
  }

  protected where(): string {
    return `Verda container deployment ${this.opts.deployment}`;
  }

  async check(): Promise<void> {
    await this.readScale();
  }

  private path(): string {
    return `/container-deployments/${encodeURIComponent(this.opts.deployment)}/scaling`;
  }

  protected async readScale(): Promise<PoolScale> {
    let body: unknown;
    try {
      body = await this.api.call('GET', this.path());
    } catch (err) {
      if (err instanceof ProviderError && /: 404\b/.test(err.message))
        throw new ProviderError(
          `Verda has no container deployment ${this.opts.deployment}; check AUTOSCALE_VERDA_DEPLOYMENT`,
        );
      throw err;
    }
    const s = (body && typeof body === 'object' ? body : {}) as Record<string, unknown>;
    this.scaling = s;
    const min = typeof s.min_replica_count === 'number' ? s.min_replica_count : 0;
    const max = typeof s.max_replica_count === 'number' ? s.max_replica_count : 0;
    return { min, max };
  }

  protected async writeScale(scale: PoolScale): Promise<void> {
    await this.api.call('PATCH', this.path(), {
      ...this.scaling,
      min_replica_count: scale.min,
      max_replica_count: scale.max,
    });
  }
}
