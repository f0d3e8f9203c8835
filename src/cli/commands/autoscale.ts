/**
 * `comfy-multi autoscale --dry-run`: checks the AUTOSCALE_ configuration (as `serve` does at start)
 * and prints the policy and the exact start a GPU would get, without starting one.
 */
import type { Command } from 'commander';
import { describeAutoscale } from '../../autoscale/index.js';
import { describeStartupError } from '../../startup-error.js';
import { cliConfig, fail } from '../context.js';

export function registerAutoscale(program: Command): void {
  program
    .command('autoscale')
    .description('GPUs on demand: check the AUTOSCALE_ settings and print what would be started')
    .option('--dry-run', 'print the policy and the start command, start nothing (the only mode)')
    .action(async () => {
      const config = cliConfig();
      try {
        process.stdout.write(await describeAutoscale(config));
      } catch (err) {
        fail(describeStartupError(err).message, 2);
      }
    });
}
