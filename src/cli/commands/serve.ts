import type { Command } from 'commander';
import { serveForever } from '../../main.js';
import { describeStartupError } from '../../startup-error.js';
import { cliConfig, fail } from '../context.js';

export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('run the control plane (HTTP API, per-user ComfyUI, worker hub, dashboard)')
    .action(async () => {
      const config = cliConfig();
      try {
        await serveForever(config);
      } catch (err) {
        // One sentence and an exit code, never a stack trace (LOG_LEVEL=debug logs the cause).
        const { message, exitCode } = describeStartupError(err);
        if (config.LOG_LEVEL === 'debug' || config.LOG_LEVEL === 'trace') console.error(err);
        fail(message, exitCode);
      }
    });
}
