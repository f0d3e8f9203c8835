/**
 * The `runpod` provider: one pod per worker through RunPod's REST API (default
 * https://rest.runpod.io/v1), an API key as bearer token. The pod runs the GPU image
 * (deploy/gpu/Dockerfile) with the worker's name and token in its environment; the image's
 * supervisor exits once the agent idled out, and `list` terminates pods of ours that exited, so an
 * idle GPU stops billing.
 *
 * The shapes, checked against RunPod's REST API v1 reference (docs.runpod.io/api-reference, server
 * https://rest.runpod.io/v1) and its official CLI (runpod/runpodctl internal/api: pods.go,
 * client.go):
 * - `POST /pods {name, imageName, gpuTypeIds, gpuCount, cloudType, dataCenterIds?,
 *   containerDiskInGb, networkVolumeId?, env}` → 201 `{id, name, desiredStatus, ...}`.
 * - `GET /pods` → `[{id, name, desiredStatus: RUNNING | EXITED | TERMINATED, ...}]`.
 * - `DELETE /pods/{id}` → 204 (terminate).
 * - errors: `{error: message}` (runpodctl also reads `message`/`detail`, and an optional `code`);
 *   no capacity is a 4xx/5xx saying "no longer any instances available" / "not enough free GPUs";
 *   401/403 is a bad or revoked key.
 * Serverless endpoints: runpod-serverless-provider.ts.
 */
import { CloudHttp, messageOf, type CloudResponse } from './cloud-http.js';
import { ProviderError, type Provider, type ProviderInstance, type StartRequest } from './provider.js';

export interface RunpodOptions {
  apiUrl: string;
  apiKey: string;
  /** RunPod GPU type ids, tried in this order by RunPod, e.g. `NVIDIA GeForce RTX 4090`. */
  gpuTypes: string[];
  /** Label for start times and prices (AUTOSCALE_INSTANCE_TYPE), default derived from the GPU type. */
  instanceType: string;
  image: string;
  cloudType: 'SECURE' | 'COMMUNITY';
  dataCenters: string[];
  containerDiskGb: number;
  networkVolumeId?: string | undefined;
  serverUrl: string;
  token: string;
  exitWhenIdleSeconds: number;
  timeoutMs?: number;
  sleep?: (ms: number) => Promise<void>;
}

/** Pod names of ours start with this, so `list` ignores the account's other pods. */
const PREFIX = 'comfy-multi-';

export class RunpodProvider implements Provider {
  readonly name = 'runpod';
  readonly listLags = true;
  readonly instanceType: string;
  private readonly http: CloudHttp;

  constructor(private readonly opts: RunpodOptions) {
    this.instanceType = opts.instanceType;
    this.http = new CloudHttp({
      provider: 'runpod',
      ...(opts.timeoutMs ? { timeoutMs: opts.timeoutMs } : {}),
      ...(opts.sleep ? { sleep: opts.sleep } : {}),
    });
  }

  /** The key works (a list succeeds). */
  async check(): Promise<void> {
    await this.call('GET', '/pods');
  }

  describeStart(req: StartRequest): string {
    const { env: _e, ...body } = this.body(req.name);
    return `runpod: POST ${this.opts.apiUrl}/pods ${JSON.stringify(body)} with WORKER_NAME=${req.name}`;
  }

  async start(req: StartRequest): Promise<ProviderInstance> {
    const pod = (await this.call('POST', '/pods', this.body(req.name))) as { id?: unknown } | null;
    if (typeof pod?.id !== 'string') throw new ProviderError('RunPod accepted the pod but sent no id');
    return { id: pod.id, name: req.name };
  }

  async stop(id: string): Promise<void> {
    try {
      await this.call('DELETE', `/pods/${encodeURIComponent(id)}`);
    } catch (err) {
      // Already gone is what we wanted.
      if (!(err instanceof ProviderError && /: 404\b/.test(err.message))) throw err;
    }
  }

  async list(): Promise<ProviderInstance[]> {
    const all = await this.call('GET', '/pods');
    const out: ProviderInstance[] = [];
    for (const p of Array.isArray(all) ? (all as Record<string, unknown>[]) : []) {
      if (typeof p.id !== 'string' || typeof p.name !== 'string' || !p.name.startsWith(PREFIX)) continue;
      const status = String(p.desiredStatus ?? '');
      if (status === 'TERMINATED') continue;
      if (status === 'EXITED') {
        // The agent idled out and the container ended: the pod still holds its GPU until terminated.
        await this.stop(p.id).catch(() => undefined);
        continue;
      }
      out.push({ id: p.id, name: p.name.slice(PREFIX.length) });
    }
    return out;
  }

  async close(): Promise<void> {}

  private body(name: string) {
    return {
      name: `${PREFIX}${name}`,
      imageName: this.opts.image,
      gpuTypeIds: this.opts.gpuTypes,
      gpuCount: 1,
      cloudType: this.opts.cloudType,
      ...(this.opts.dataCenters.length ? { dataCenterIds: this.opts.dataCenters } : {}),
      containerDiskInGb: this.opts.containerDiskGb,
      ...(this.opts.networkVolumeId ? { networkVolumeId: this.opts.networkVolumeId } : {}),
      env: {
        COMFY_MULTI_SERVER: this.opts.serverUrl,
        COMFY_MULTI_TOKEN: this.opts.token,
        WORKER_NAME: name,
        WORKER_EXIT_WHEN_IDLE_SECONDS: String(this.opts.exitWhenIdleSeconds),
        WORKER_PROVIDER: 'runpod',
        WORKER_INSTANCE: name,
      },
    };
  }

  private async call(method: string, path: string, json?: unknown): Promise<unknown> {
    const res = await this.http.request(method, `${this.opts.apiUrl}${path}`, {
      headers: { authorization: `Bearer ${this.opts.apiKey}` },
      ...(json !== undefined ? { json } : {}),
    });
    if (res.status < 400) return res.body;
    throw runpodError(method, path, res);
  }
}

export function runpodError(method: string, path: string, res: CloudResponse): ProviderError {
  const body = Array.isArray(res.body) ? res.body[0] : res.body;
  const msg = messageOf(body);
  const text = `RunPod ${method} ${path.replace(/\/pods\/.+$/, '/pods/…')}: ${res.status}${msg ? `: ${msg}` : ''}`;
  if (res.status === 401 || res.status === 403)
    return new ProviderError(`${text} (bad, expired or revoked AUTOSCALE_RUNPOD_API_KEY)`, 'credentials');
  if (/quota|limit|insufficient (funds|balance)|balance/i.test(msg)) return new ProviderError(text, 'quota');
  if (/no longer any instances available|not enough free gpus|no available|capacity|unavailable/i.test(msg))
    return new ProviderError(text, 'capacity');
  return new ProviderError(text);
}
