import { Command } from 'commander';
import { VERSION } from '../version.js';
import { registerServe } from './commands/serve.js';
import { registerUsers } from './commands/users.js';
import { registerWorkers } from './commands/workers.js';
import { registerWorker } from './commands/worker.js';
import { registerStatus } from './commands/status.js';

const program = new Command()
  .name('comfy-multi')
  .description('Run ComfyUI workshops: per-participant ComfyUI sharing a few GPUs through one fair queue.')
  .version(VERSION);

registerServe(program);
registerUsers(program);
registerWorkers(program);
registerWorker(program);
registerStatus(program);

await program.parseAsync(process.argv);
