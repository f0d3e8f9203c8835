/**
 * The `runpod-serverless` provider: a RunPod serverless endpoint whose workers run the GPU image
 * (deploy/gpu/Dockerfile) as ephemeral agents. The autoscaler sets the endpoint's `workersMin`
 * (its always-running workers); RunPod's own request-based scaling stays idle because our jobs come
 * through the control plane. See replica-pool.ts for slots and binding.
 *
 * Shapes, checked against RunPod's REST API v1 (https://rest.runpod.io/v1) and its official CLI
 * (runpod/runpodctl internal/api/endpoints.go):
 * - `GET /endpoints/{id}` → `{id, name, workersMin, workersMax, idleTimeout, templateId, ...}`.
 * - `PATCH /endpoints/{id} {workersMin, workersMax}`: only the fields sent change.
 * - errors as for pods (runpod-provider.ts).
 * The endpoint's template sets COMFY_MULTI_SERVER, COMFY_MULTI_TOKEN (a RunPod secret),
 * WORKER_PROVIDER=runpod-serverless and WORKER_EXIT_WHEN_IDLE_SECONDS; each worker registers as
 * `runpod-<RUNPOD_POD_ID>` (docs/gpu-hosts.md).
 */
import { CloudHttp } from './cloud-http.js';
import { ProviderError } from './provider.js';
import { ReplicaPoolProvider, type PoolScale } from './replica-pool.js';
import { runpodError } from './runpod-provider.js';

export interface RunpodServerlessOptions {
  apiUrl: string;
  apiKey: string;
  endpointId: string;
  /** Label for start times and prices (AUTOSCALE_INSTANCE_TYPE), default `runpod-serverless`. */
  instanceType: string;
  timeoutMs?: number;
  sleep?: (ms: number) => Promise<void>;
}

export class RunpodServerlessProvider extends ReplicaPoolProvider {
  readonly name = 'runpod-serverless';
  readonly instanceType: string;
  private readonly http: CloudHttp;

  constructor(private readonly opts: RunpodServerlessOptions) {
    super();
    this.instanceType = opts.instanceType;
    this.http = new CloudHttp({
      provider: 'runpod',
      ...(opts.timeoutMs ? { timeoutMs: opts.timeoutMs } : {}),
      ...(opts.sleep ? { sleep: opts.sleep } : {}),
    });
  }

  protected where(): string {
    return `RunPod endpoint ${this.opts.endpointId}`;
  }

  /** The key works and the endpoint exists. */
  async check(): Promise<void> {
    await this.readScale();
  }

  protected async readScale(): Promise<PoolScale> {
    const e = (await this.call('GET', '')) as { workersMin?: unknown; workersMax?: unknown } | null;
    const min = typeof e?.workersMin === 'number' ? e.workersMin : 0;
    const max = typeof e?.workersMax === 'number' ? e.workersMax : 0;
    return { min, max };
  }

  protected async writeScale(scale: PoolScale): Promise<void> {
    await this.call('PATCH', '', { workersMin: scale.min, workersMax: scale.max });
  }

  private async call(method: string, suffix: string, json?: unknown): Promise<unknown> {
    const path = `/endpoints/${encodeURIComponent(this.opts.endpointId)}${suffix}`;
    const res = await this.http.request(method, `${this.opts.apiUrl}${path}`, {
      headers: { authorization: `Bearer ${this.opts.apiKey}` },
      ...(json !== undefined ? { json } : {}),
    });
    if (res.status < 400) return res.body;
    if (res.status === 404)
      throw new ProviderError(
        `RunPod has no serverless endpoint ${this.opts.endpointId}; check AUTOSCALE_RUNPOD_ENDPOINT_ID`,
      );
    throw runpodError(method, '/endpoints/…', res);
  }
}
