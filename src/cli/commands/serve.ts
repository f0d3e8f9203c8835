import type { Command } from 'commander';
import { serveForever } from '../../main.js';
import { cliConfig } from '../context.js';

export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('run the control plane (HTTP API, per-user ComfyUI, worker hub, dashboard)')
    .action(async () => {
      await serveForever(cliConfig());
    });
}
