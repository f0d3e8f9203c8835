/**
 * A local HTTP server that answers like the Verda (DataCrunch) and RunPod APIs, so the cloud
 * providers are tested without the internet and without money. It keeps instances/pods in memory
 * and replays the request and response shapes the providers' header comments describe (checked
 * against RunPod's REST v1 reference and official CLI, and Verda's official Python SDK; see
 * src/autoscale/*-provider.ts), and their failure modes, switched on by the test:
 * - `noCapacity`: locations (Verda) or all (RunPod) without capacity;
 * - `quota`: the account is out of funds / quota;
 * - `expireTokens()`: Verda access tokens already handed out stop working (401), new ones work;
 * - `badCredentials`: the client credentials / API key are refused;
 * - `rateLimit`: the next N requests get 429 with `Retry-After: retryAfter`;
 * - `outage`: everything answers 503.
 * Every request is logged (method, path, body) for assertions.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ReplayRequest {
  method: string;
  path: string;
  body: unknown;
  auth: string | undefined;
}

export interface VerdaInstance {
  id: string;
  hostname: string;
  description: string;
  status: string;
  instance_type: string;
  location: string;
  startup_script_id: string | null;
}

export interface RunpodPod {
  id: string;
  name: string;
  desiredStatus: 'RUNNING' | 'EXITED' | 'TERMINATED';
  env: Record<string, string>;
  gpuTypeIds: string[];
}

export class CloudReplay {
  readonly log: ReplayRequest[] = [];
  readonly verdaInstances = new Map<string, VerdaInstance>();
  readonly verdaScripts = new Map<string, { name: string; script: string }>();
  readonly pods = new Map<string, RunpodPod>();
  /** RunPod serverless endpoints by id (what `GET /endpoints/{id}` answers). */
  readonly endpoints = new Map<
    string,
    { id: string; name: string; workersMin: number; workersMax: number; idleTimeout: number }
  >();
  /** Verda container deployments' scaling options by deployment name. */
  readonly deployments = new Map<
    string,
    Record<string, unknown> & { min_replica_count: number; max_replica_count: number }
  >();
  verdaInstanceTypes = ['1RTX4090.16V', '1A100.22V', '1H100.80S.30V'];
  noCapacity = new Set<string>();
  /** RunPod: no GPU of the asked types anywhere. */
  runpodNoCapacity = false;
  quota = false;
  badCredentials = false;
  /** Every request answers 503 with an HTML page, as a load balancer in front of a down API does. */
  outage = false;
  rateLimit = 0;
  retryAfter = '1';
  private validTokens = new Set<string>();
  private n = 0;
  private server: Server | null = null;
  url = '';

  async start(): Promise<this> {
    this.server = createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  async close(): Promise<void> {
    await new Promise<void>((r) => this.server?.close(() => r()));
  }

  /** Tokens handed out so far stop working (they expired). */
  expireTokens(): void {
    this.validTokens.clear();
  }

  requests(method: string, pathPrefix: string): ReplayRequest[] {
    return this.log.filter((r) => r.method === method && r.path.startsWith(pathPrefix));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const raw = Buffer.concat(chunks).toString();
    let body: unknown;
    try {
      body = raw ? JSON.parse(raw) : null;
    } catch {
      body = raw;
    }
    const path = (req.url ?? '/').split('?')[0]!;
    this.log.push({ method: req.method ?? 'GET', path, body, auth: req.headers.authorization });
    const send = (status: number, data?: unknown, headers: Record<string, string> = {}) => {
      if (data === undefined) {
        res.writeHead(status, headers).end();
      } else if (typeof data === 'string') {
        res.writeHead(status, { 'content-type': 'text/plain', ...headers }).end(data);
      } else {
        res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(data));
      }
    };
    if (this.outage) {
      res
        .writeHead(503, { 'content-type': 'text/html' })
        .end('<html><body>503 Service Unavailable</body></html>');
      return;
    }
    if (this.rateLimit > 0) {
      this.rateLimit--;
      return send(
        429,
        { code: 'too_many_requests', message: 'Too many requests' },
        { 'retry-after': this.retryAfter },
      );
    }
    if (path.startsWith('/verda/'))
      return this.verda(req.method ?? 'GET', path.slice('/verda'.length), body, req, send);
    if (path.startsWith('/runpod/'))
      return this.runpod(req.method ?? 'GET', path.slice('/runpod'.length), body, req, send);
    send(404, { error: 'not found' });
  }

  private verda(
    method: string,
    path: string,
    body: unknown,
    req: IncomingMessage,
    send: (status: number, data?: unknown) => void,
  ): void {
    const b = (body ?? {}) as Record<string, unknown>;
    if (method === 'POST' && path === '/v1/oauth2/token') {
      if (this.badCredentials || b.grant_type !== 'client_credentials')
        return send(401, { code: 'unauthorized_request', message: 'Invalid client credentials' });
      const token = `tok-${++this.n}`;
      this.validTokens.add(token);
      return send(200, {
        access_token: token,
        refresh_token: `r-${this.n}`,
        token_type: 'Bearer',
        expires_in: 3600,
        scope: 'cloud-api-v1',
      });
    }
    const token = (req.headers.authorization ?? '').replace(/^Bearer /, '');
    if (!this.validTokens.has(token))
      return send(401, { code: 'unauthorized_request', message: 'Access token is expired or invalid' });
    if (method === 'GET' && path === '/v1/instance-types')
      return send(
        200,
        this.verdaInstanceTypes.map((t) => ({ instance_type: t, price_per_hour: '1.00', description: t })),
      );
    if (method === 'POST' && path === '/v1/scripts') {
      const id = `script-${++this.n}`;
      this.verdaScripts.set(id, { name: String(b.name), script: String(b.script) });
      return send(200, id);
    }
    if (method === 'DELETE' && path === '/v1/scripts') {
      for (const id of (b.scripts ?? []) as string[]) this.verdaScripts.delete(id);
      return send(200);
    }
    if (method === 'GET' && path === '/v1/instances') return send(200, [...this.verdaInstances.values()]);
    if (method === 'POST' && path === '/v1/instances') {
      if (this.quota)
        return send(400, {
          code: 'insufficient_funds',
          message: 'Not enough balance to deploy this instance',
        });
      if (!this.verdaInstanceTypes.includes(String(b.instance_type)))
        return send(400, { code: 'invalid_request', message: 'Invalid instance type' });
      if (this.noCapacity.has(String(b.location_code)))
        return send(400, {
          code: 'invalid_request',
          message: `No capacity available for ${String(b.instance_type)} in ${String(b.location_code)}`,
        });
      const id = `inst-${++this.n}`;
      this.verdaInstances.set(id, {
        id,
        hostname: String(b.hostname),
        description: String(b.description),
        status: 'provisioning',
        instance_type: String(b.instance_type),
        location: String(b.location_code),
        startup_script_id: typeof b.startup_script_id === 'string' ? b.startup_script_id : null,
      });
      return send(202, id);
    }
    if (method === 'PUT' && path === '/v1/instances') {
      // The official SDK always sends a list of ids.
      if (!Array.isArray(b.id)) return send(400, { code: 'invalid_request', message: 'id must be a list' });
      for (const id of b.id as unknown[]) {
        const inst = this.verdaInstances.get(String(id));
        if (!inst) return send(404, { code: 'not_found', message: 'Instance not found' });
        if (b.action === 'delete') this.verdaInstances.delete(inst.id);
        else if (b.action === 'shutdown') inst.status = 'offline';
        else return send(400, { code: 'invalid_request', message: 'Invalid action' });
      }
      return send(202);
    }
    const dep = /^\/v1\/container-deployments\/([^/]+)\/scaling$/.exec(path);
    if (dep) {
      const d = this.deployments.get(decodeURIComponent(dep[1]!));
      if (!d) return send(404, { code: 'not_found', message: 'Deployment not found' });
      if (method === 'GET') return send(200, d);
      if (method === 'PATCH') {
        if (this.quota && Number(b.min_replica_count) > d.min_replica_count)
          return send(400, { code: 'insufficient_funds', message: 'Not enough balance to scale up' });
        Object.assign(d, b);
        return send(200, d);
      }
    }
    send(404, { code: 'not_found', message: 'Not found' });
  }

  private runpod(
    method: string,
    path: string,
    body: unknown,
    req: IncomingMessage,
    send: (status: number, data?: unknown) => void,
  ): void {
    if (this.badCredentials || req.headers.authorization !== 'Bearer rp-key')
      return send(401, { error: 'Unauthorized: invalid api key' });
    const b = (body ?? {}) as Record<string, unknown>;
    if (method === 'GET' && path === '/v1/pods') return send(200, [...this.pods.values()]);
    if (method === 'POST' && path === '/v1/pods') {
      if (this.quota) return send(400, { error: 'Insufficient balance: add funds to your account' });
      if (this.runpodNoCapacity)
        return send(500, {
          error:
            'There are no longer any instances available with the requested specifications. Please refresh and try again.',
        });
      const id = `pod${++this.n}`;
      const pod: RunpodPod = {
        id,
        name: String(b.name),
        desiredStatus: 'RUNNING',
        env: (b.env ?? {}) as Record<string, string>,
        gpuTypeIds: (b.gpuTypeIds ?? []) as string[],
      };
      this.pods.set(id, pod);
      return send(201, { ...pod, imageName: b.imageName, costPerHr: 0.69 });
    }
    const ep = /^\/v1\/endpoints\/([^/]+)$/.exec(path);
    if (ep) {
      const e = this.endpoints.get(decodeURIComponent(ep[1]!));
      if (!e) return send(404, { error: 'endpoint not found' });
      if (method === 'GET') return send(200, { ...e, templateId: 'tmpl1', gpuIds: 'ADA_24' });
      if (method === 'PATCH') {
        if (this.quota && Number(b.workersMin) > e.workersMin)
          return send(400, { error: 'Insufficient balance: add funds to your account' });
        if (typeof b.workersMin === 'number') e.workersMin = b.workersMin;
        if (typeof b.workersMax === 'number') e.workersMax = b.workersMax;
        return send(200, e);
      }
    }
    const m = /^\/v1\/pods\/([^/]+)$/.exec(path);
    if (method === 'DELETE' && m) {
      if (!this.pods.delete(decodeURIComponent(m[1]!))) return send(404, { error: 'pod not found' });
      return send(204);
    }
    send(404, { error: 'not found' });
  }
}
