/**
 * The `verda` provider (Verda, formerly DataCrunch): one GPU instance per worker through the public
 * REST API (default https://api.verda.com/v1), OAuth2 client credentials.
 *
 * The request and response shapes, checked against Verda's official Python SDK (DataCrunch-io/
 * datacrunch-python: verda/instances, verda/startup_scripts, verda/constants):
 * - authentication and errors: see verda-api.ts.
 * - `GET /instance-types` → `[{instance_type, price_per_hour, ...}]` (the start-time check).
 * - `POST /scripts {name, script}` → the script id (text): the startup script that runs the GPU
 *   image with this worker's name and token.
 * - `POST /instances {instance_type, image, hostname, description, location_code, ssh_key_ids,
 *   startup_script_id, is_spot}` → the instance id (text).
 * - `GET /instances` → `[{id, hostname, description, status, instance_type, location, ...}]`.
 * - `PUT /instances {action: 'delete', id: [id]}` → 202 (the SDK always sends a list of ids).
 * - `DELETE /scripts {scripts: [id]}`: the startup script (it holds the worker token) goes with its
 *   instance, or at once when no instance was started.
 * - errors: `{code, message}`, codes `invalid_request`, `unauthorized_request`,
 *   `insufficient_funds`, `forbidden_action`, `not_found`, `server_error`, `service_unavailable`.
 *
 * No capacity in a location (a 4xx whose message says so) tries the next of
 * AUTOSCALE_VERDA_LOCATIONS; if none has one the start fails as `capacity` and the autoscaler tries
 * again after its cool-down. The instance's startup script powers it off once the agent exits
 * (idle), and `list` deletes instances of ours that are off, so an idle GPU stops billing.
 */
import { VerdaApi } from './verda-api.js';
import { ProviderError, type Provider, type ProviderInstance, type StartRequest } from './provider.js';

export interface VerdaOptions {
  apiUrl: string;
  clientId: string;
  clientSecret: string;
  /** Verda instance type, e.g. `1RTX6000ADA.10V`. */
  instanceType: string;
  /** OS image with Docker and the NVIDIA driver, e.g. `ubuntu-24.04-cuda-12.8-open-docker`. */
  image: string;
  /** Tried in order when one has no capacity. */
  locations: string[];
  sshKeyIds: string[];
  /** The GPU container image (deploy/gpu/Dockerfile, pushed to a registry). */
  workerImage: string;
  spot: boolean;
  serverUrl: string;
  token: string;
  exitWhenIdleSeconds: number;
  timeoutMs?: number;
  sleep?: (ms: number) => Promise<void>;
}

/** What marks our instances at Verda (description), so `list` ignores the account's others. */
const MARK = 'comfy-multi worker';
const OFF = new Set(['offline', 'discontinued', 'error', 'no_capacity', 'notfound']);
const GONE = new Set(['deleting', 'discontinued', 'notfound']);

export class VerdaProvider implements Provider {
  readonly name = 'verda';
  readonly listLags = true;
  readonly instanceType: string;
  private readonly api: VerdaApi;
  /** Startup script per instance id, deleted with it. */
  private readonly scripts = new Map<string, string>();

  constructor(private readonly opts: VerdaOptions) {
    this.instanceType = opts.instanceType;
    this.api = new VerdaApi(opts);
  }

  async check(): Promise<void> {
    const types = await this.call('GET', '/instance-types');
    const known = Array.isArray(types)
      ? types
          .map((t) => (t as { instance_type?: unknown }).instance_type)
          .filter((t) => typeof t === 'string')
      : [];
    if (!known.includes(this.opts.instanceType))
      throw new ProviderError(
        `AUTOSCALE_INSTANCE_TYPE=${this.opts.instanceType} is not a Verda instance type (known: ${known.slice(0, 12).join(', ')})`,
      );
  }

  describeStart(req: StartRequest): string {
    return `verda: POST ${this.opts.apiUrl}/instances ${JSON.stringify({
      instance_type: this.opts.instanceType,
      image: this.opts.image,
      hostname: req.name,
      location_code: this.opts.locations[0],
      is_spot: this.opts.spot,
    })} with a startup script running ${this.opts.workerImage} as worker ${req.name}`;
  }

  async start(req: StartRequest): Promise<ProviderInstance> {
    const scriptId = String(
      await this.call('POST', '/scripts', { name: `comfy-multi ${req.name}`, script: this.script(req.name) }),
    ).trim();
    let lastCapacity: ProviderError | null = null;
    for (const location of this.opts.locations) {
      try {
        const id = await this.call('POST', '/instances', {
          instance_type: this.opts.instanceType,
          image: this.opts.image,
          hostname: req.name,
          description: `${MARK} ${req.name}`,
          location_code: location,
          ssh_key_ids: this.opts.sshKeyIds,
          startup_script_id: scriptId,
          is_spot: this.opts.spot,
        });
        const instanceId = typeof id === 'string' ? id.trim() : String((id as { id?: unknown })?.id);
        this.scripts.set(instanceId, scriptId);
        return { id: instanceId, name: req.name };
      } catch (err) {
        if (err instanceof ProviderError && err.kind === 'capacity') {
          lastCapacity = err;
          continue;
        }
        await this.deleteScript(scriptId);
        throw err;
      }
    }
    await this.deleteScript(scriptId);
    throw new ProviderError(
      `no ${this.opts.instanceType} capacity in ${this.opts.locations.join(', ')}${lastCapacity ? ` (${lastCapacity.message})` : ''}`,
      'capacity',
    );
  }

  async stop(id: string): Promise<void> {
    await this.call('PUT', '/instances', { action: 'delete', id: [id] });
    const script = this.scripts.get(id);
    this.scripts.delete(id);
    if (script) await this.deleteScript(script);
  }

  /** Best effort: a script left behind costs nothing but holds the worker token. */
  private async deleteScript(id: string): Promise<void> {
    await this.call('DELETE', '/scripts', { scripts: [id] }).catch(() => undefined);
  }

  async list(): Promise<ProviderInstance[]> {
    const all = await this.call('GET', '/instances');
    const out: ProviderInstance[] = [];
    for (const i of Array.isArray(all) ? (all as Record<string, unknown>[]) : []) {
      if (typeof i.id !== 'string' || typeof i.description !== 'string' || !i.description.startsWith(MARK))
        continue;
      const status = String(i.status ?? '');
      if (GONE.has(status)) continue;
      if (OFF.has(status)) {
        // Powered off after its agent's idle exit (or broken): it bills until deleted.
        await this.stop(i.id).catch(() => undefined);
        continue;
      }
      out.push({ id: i.id, name: typeof i.hostname === 'string' ? i.hostname : undefined });
    }
    return out;
  }

  async close(): Promise<void> {}

  /** The instance's startup script: runs the GPU image as this worker, powers off after it exits. */
  private script(name: string): string {
    const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
    return [
      '#!/bin/sh',
      `docker run --rm --gpus all --name comfy-multi-worker -v /models:/models \\`,
      `  -e COMFY_MULTI_SERVER=${q(this.opts.serverUrl)} -e COMFY_MULTI_TOKEN=${q(this.opts.token)} \\`,
      `  -e WORKER_NAME=${q(name)} -e WORKER_EXIT_WHEN_IDLE_SECONDS=${this.opts.exitWhenIdleSeconds} \\`,
      `  -e WORKER_PROVIDER=verda -e WORKER_INSTANCE=${q(name)} ${q(this.opts.workerImage)}`,
      'poweroff',
      '',
    ].join('\n');
  }

  private call(method: string, path: string, json?: unknown): Promise<unknown> {
    return this.api.call(method, path, json);
  }
}
