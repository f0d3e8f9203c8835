import { Command } from 'commander';
import { VERSION } from '../version.js';
import { registerServe } from './commands/serve.js';
import { registerUsers } from './commands/users.js';
import { registerWorkers } from './commands/workers.js';
import { registerWorker } from './commands/worker.js';
import { registerStatus } from './commands/status.js';
import { registerBackup } from './commands/backup.js';
import { registerRestore } from './commands/restore.js';
import { registerStore } from './commands/store.js';
import { registerDoctor } from './commands/doctor.js';
import { registerNginxConfig } from './commands/nginx-config.js';
import { registerAutoscale } from './commands/autoscale.js';
import { registerUsage } from './commands/usage.js';

/** Every command, without parsing anything: the CLI runs it, the docs test checks commands against it. */
export function buildProgram(): Command {
  const program = new Command()
    .name('comfy-multi')
    .description('Run ComfyUI workshops: per-participant ComfyUI sharing a few GPUs through one fair queue.')
    .version(VERSION);

  registerServe(program);
  registerUsers(program);
  registerWorkers(program);
  registerWorker(program);
  registerStatus(program);
  registerBackup(program);
  registerRestore(program);
  registerStore(program);
  registerDoctor(program);
  registerNginxConfig(program);
  registerAutoscale(program);
  registerUsage(program);
  return program;
}
