/**
 * The `local` provider: each instance is a `comfy-multi worker` child process on this machine,
 * against a ComfyUI that is already running here (a real one, or the stand-in in tests). It is
 * what the end-to-end tests use and what a single big GPU box with several ComfyUIs needs.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import { ProviderError, type Provider, type ProviderInstance, type StartRequest } from './provider.js';

export interface LocalProviderOptions {
  /** The control plane the agents connect to. */
  serverUrl: string;
  /** Worker token the agents use (never put on their command line; passed in the environment). */
  token: string;
  /** ComfyUI URLs the agents run against; instance n uses entry n mod length. */
  comfyuiUrls: string[];
  /** The agent's `--exit-when-idle`, a safety net should this control plane go away. */
  exitWhenIdleSeconds: number;
  /** Program and leading arguments that run the CLI; default: this installation's bin/comfy-multi.js. */
  command?: string[];
  logger?: Logger;
  /** Handed back jobs may finish for this long on stop. Default 30 s. */
  graceSeconds?: number;
}

const DEFAULT_BIN = fileURLToPath(new URL('../../bin/comfy-multi.js', import.meta.url));

export class LocalProvider implements Provider {
  readonly name = 'local';
  readonly instanceType = 'local';
  private readonly children = new Map<string, { child: ChildProcess; exited: Promise<void> }>();
  private readonly command: string[];
  private next = 0;

  constructor(private readonly opts: LocalProviderOptions) {
    this.command = opts.command ?? [process.execPath, DEFAULT_BIN];
  }

  async check(): Promise<void> {
    if (this.opts.comfyuiUrls.length === 0)
      throw new ProviderError(
        'AUTOSCALE_LOCAL_COMFYUI_URLS needs at least one ComfyUI URL for the local provider',
      );
    const bin = this.command.find((a) => a.endsWith('.js') || a.endsWith('.ts'));
    if (bin && !existsSync(bin) && !existsSync(fileURLToPath(new URL(bin, `file://${process.cwd()}/`))))
      throw new ProviderError(`the local provider cannot find the comfy-multi program ${bin}`);
  }

  private args(req: StartRequest, comfyui: string): string[] {
    return [
      ...this.command.slice(1),
      'worker',
      '--server',
      this.opts.serverUrl,
      '--comfyui',
      comfyui,
      '--name',
      req.name,
      '--exit-when-idle',
      String(this.opts.exitWhenIdleSeconds),
      '--provider',
      this.name,
      '--instance',
      req.name,
      '--grace-seconds',
      String(this.opts.graceSeconds ?? 30),
      '--no-frontend-mirror',
    ];
  }

  describeStart(req: StartRequest): string {
    const comfyui = this.opts.comfyuiUrls[this.next % this.opts.comfyuiUrls.length] ?? '?';
    return `local: ${[this.command[0], ...this.args(req, comfyui)].join(' ')} (token in COMFY_MULTI_TOKEN)`;
  }

  async start(req: StartRequest): Promise<ProviderInstance> {
    const comfyui = this.opts.comfyuiUrls[this.next++ % this.opts.comfyuiUrls.length]!;
    const child = spawn(this.command[0]!, this.args(req, comfyui), {
      env: {
        ...process.env,
        COMFY_MULTI_TOKEN: this.opts.token,
        LOG_LEVEL: process.env.AUTOSCALE_AGENT_LOG_LEVEL ?? 'warn',
      },
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', (err) => reject(new ProviderError(`could not start the agent: ${err.message}`)));
    });
    this.children.set(req.name, { child, exited });
    void exited.then(() => {
      this.children.delete(req.name);
      this.opts.logger?.info({ instance: req.name, code: child.exitCode }, 'local worker exited');
    });
    return { id: req.name, name: req.name };
  }

  async stop(id: string): Promise<void> {
    const c = this.children.get(id);
    if (!c) return;
    // SIGTERM: the agent stops taking jobs, lets a running one finish within its grace, hands back
    // the rest and exits.
    c.child.kill('SIGTERM');
  }

  async list(): Promise<ProviderInstance[]> {
    return [...this.children.keys()].map((id) => ({ id, name: id }));
  }

  async close(): Promise<void> {
    const all = [...this.children.values()];
    for (const c of all) c.child.kill('SIGTERM');
    await Promise.race([
      Promise.all(all.map((c) => c.exited)),
      new Promise((r) => setTimeout(r, ((this.opts.graceSeconds ?? 30) + 5) * 1000).unref()),
    ]);
    for (const c of all) if (c.child.exitCode === null) c.child.kill('SIGKILL');
  }
}
