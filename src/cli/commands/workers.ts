import type { Command } from 'commander';
import { WorkerTokenService } from '../../auth/worker-tokens.js';
import { AppError } from '../../errors.js';
import type { Config } from '../../config/schema.js';
import { cliConfig, fail, withStore } from '../context.js';

/**
 * With STORE=redis, tells the running control-plane processes of the revoke so they close that
 * token's worker connections (4004) now instead of at the next heartbeat. Best effort: without a
 * listener, or if Redis is away, the heartbeat re-check still catches it.
 */
export async function announceRevoke(config: Config, name: string): Promise<void> {
  if (config.STORE !== 'redis') return;
  try {
    const { openClusterBus } = await import('../../cluster/index.js');
    const { createLogger } = await import('../../logger.js');
    const { revokedMessage, COMMAND_TOPIC } = await import('../../cluster/worker-commands.js');
    const bus = await openClusterBus(config, createLogger('silent'));
    try {
      await bus.publish(COMMAND_TOPIC, revokedMessage(name));
    } finally {
      await bus.close();
    }
  } catch {
    // The heartbeat re-check closes the connections within one heartbeat anyway.
  }
}

async function run<T>(fn: (tokens: WorkerTokenService) => Promise<T>): Promise<T> {
  const config = cliConfig();
  try {
    return await withStore(config, (store) => fn(new WorkerTokenService(store, config.WORKER_TOKENS)));
  } catch (err) {
    if (err instanceof AppError) fail(err.message);
    throw err;
  }
}

const iso = (t: number | null): string => (t === null ? '-' : new Date(t).toISOString());

/** `comfy-multi workers token create|list|revoke`: the credentials GPU worker agents connect with. */
export function registerWorkers(program: Command): void {
  const workers = program.command('workers').description('manage GPU worker agents');
  const token = workers
    .command('token')
    .description('worker tokens (agents send them as Authorization: Bearer)');

  token
    .command('create <name>')
    .description('create a worker token and print it once (only its hash is stored)')
    .action(async (name: string) => {
      const created = await run((t) => t.create(name));
      process.stdout.write(
        `created worker token ${created.name}:\n${created.token}\n` +
          'It is shown only this once. Start the agent with --token <token> (or COMFY_MULTI_TOKEN).\n',
      );
    });

  token
    .command('list')
    .description('list worker tokens (never the tokens themselves)')
    .option('--json', 'print JSON')
    .action(async (opts: { json?: boolean }) => {
      const list = await run((t) => t.list());
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(list, null, 2)}\n`);
        return;
      }
      for (const t of list) {
        const state = t.revokedAt !== null ? `revoked ${iso(t.revokedAt)}` : 'active';
        process.stdout.write(
          `${t.name.padEnd(34)}${t.source.padEnd(8)}${iso(t.createdAt).padEnd(26)}${state}\n`,
        );
      }
    });

  token
    .command('revoke <name>')
    .description('revoke a worker token; agents using it can no longer connect')
    .action(async (name: string) => {
      if (!(await run((t) => t.revoke(name)))) fail(`no active stored worker token named ${name}`);
      await announceRevoke(cliConfig(), name);
      process.stdout.write(`revoked ${name}\n`);
    });
}
