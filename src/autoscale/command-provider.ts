/**
 * The `command` provider: the instructor's own scripts start, stop and list GPUs (any cloud CLI,
 * ssh to a lab machine, docker run ...). Each is run with `/bin/sh -c` and these variables:
 *
 * - up:   WORKER_NAME (the name its agent must register with), COMFY_MULTI_SERVER, COMFY_MULTI_TOKEN,
 *         WORKER_EXIT_WHEN_IDLE_SECONDS, WORKER_PROVIDER=command. It prints the instance id as its
 *         last line of output (nothing printed: the id is WORKER_NAME) and exits 0 once the
 *         provider accepted the start (not once the GPU is up).
 * - down: WORKER_INSTANCE (the id) and WORKER_NAME. Exits 0 once asked.
 * - list: prints one instance a line, `id` or `id name`; every instance it started that is still
 *         there (stopped ones must not be listed).
 *
 * A non-zero exit is a failure whose last line of stderr is shown on the dashboard.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { ProviderError, type Provider, type ProviderInstance, type StartRequest } from './provider.js';

export interface CommandProviderOptions {
  up: string;
  down: string;
  list: string;
  serverUrl: string;
  token: string;
  exitWhenIdleSeconds: number;
  /** Shown on the dashboard and used for start times and prices. Default `command`. */
  instanceType?: string;
  /** Per command. Default 120 s. */
  timeoutMs?: number;
}

export class CommandProvider implements Provider {
  readonly name = 'command';
  readonly listLags = true;
  readonly instanceType: string;
  private names = new Map<string, string>();

  constructor(private readonly opts: CommandProviderOptions) {
    this.instanceType = opts.instanceType ?? 'command';
  }

  async check(): Promise<void> {
    for (const [what, cmd] of [
      ['AUTOSCALE_COMMAND_UP', this.opts.up],
      ['AUTOSCALE_COMMAND_DOWN', this.opts.down],
      ['AUTOSCALE_COMMAND_LIST', this.opts.list],
    ] as const) {
      const program = cmd.trim().split(/\s+/)[0] ?? '';
      if (!program) throw new ProviderError(`${what} is required for the command provider`);
      if (program.includes('/') && !existsSync(program))
        throw new ProviderError(`${what} names ${program}, which does not exist`);
    }
  }

  describeStart(req: StartRequest): string {
    return `command: WORKER_NAME=${req.name} WORKER_PROVIDER=command /bin/sh -c ${JSON.stringify(this.opts.up)}`;
  }

  async start(req: StartRequest): Promise<ProviderInstance> {
    const out = await this.run(this.opts.up, 'up', {
      WORKER_NAME: req.name,
      COMFY_MULTI_SERVER: this.opts.serverUrl,
      COMFY_MULTI_TOKEN: this.opts.token,
      WORKER_EXIT_WHEN_IDLE_SECONDS: String(this.opts.exitWhenIdleSeconds),
      WORKER_PROVIDER: this.name,
    });
    const lines = out
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean);
    const id = (lines.at(-1) ?? req.name).slice(0, 256);
    this.names.set(id, req.name);
    return { id, name: req.name };
  }

  async stop(id: string): Promise<void> {
    await this.run(this.opts.down, 'down', { WORKER_INSTANCE: id, WORKER_NAME: this.names.get(id) ?? id });
  }

  async list(): Promise<ProviderInstance[]> {
    const out = await this.run(this.opts.list, 'list', {});
    return out
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean)
      .map((l) => {
        const [id, name] = l.split(/\s+/);
        return { id: id!, name: name ?? this.names.get(id!) };
      });
  }

  async close(): Promise<void> {}

  private run(cmd: string, what: string, env: Record<string, string>): Promise<string> {
    return new Promise((resolve, reject) => {
      const child = spawn('/bin/sh', ['-c', cmd], {
        env: { ...process.env, ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
        timeout: this.opts.timeoutMs ?? 120_000,
        killSignal: 'SIGKILL',
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout = (stdout + d.toString()).slice(-65_536)));
      child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-8192)));
      child.once('error', (err) =>
        reject(new ProviderError(`the ${what} command could not run: ${err.message}`)),
      );
      child.once('close', (code, signal) => {
        if (code === 0) return resolve(stdout);
        const last = stderr.trim().split('\n').at(-1) ?? '';
        reject(
          new ProviderError(
            `the ${what} command ${signal ? `was killed (${signal}, timeout?)` : `exited with ${code}`}${last ? `: ${last.slice(0, 300)}` : ''}`,
          ),
        );
      });
    });
  }
}
