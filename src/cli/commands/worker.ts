/**
 * `comfy-multi worker`: runs the worker agent beside one ComfyUI. Flags win over environment
 * variables; every value is validated with zod and each bad field is named. The token is never
 * logged or echoed.
 */
import { statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { z } from 'zod';
import { createLogger } from '../../logger.js';
import { startAgent } from '../../worker/agent/index.js';

const httpUrl = (what: string) =>
  z
    .string({ error: `${what} is required` })
    .trim()
    .min(1, `${what} is required`)
    .refine((s) => {
      try {
        return ['http:', 'https:', 'ws:', 'wss:'].includes(new URL(s).protocol);
      } catch {
        return false;
      }
    }, `${what} must be an http(s) URL, e.g. http://127.0.0.1:8188`);

/** An optional folder that must exist when given: an absolute path, or `message`. */
function existingFolder(message: string) {
  return z
    .string()
    .trim()
    .min(1)
    .refine((d) => statSync(d, { throwIfNoEntry: false })?.isDirectory() === true, message)
    .transform((d) => resolve(d))
    .optional();
}

export const workerArgsSchema = z.object({
  server: httpUrl('--server (COMFY_MULTI_SERVER)'),
  token: z
    .string({ error: '--token (COMFY_MULTI_TOKEN) is required' })
    .trim()
    .min(1, '--token (COMFY_MULTI_TOKEN) is required'),
  comfyui: httpUrl('--comfyui (COMFYUI_URL)'),
  name: z
    .string()
    .trim()
    .regex(
      /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/,
      '--name (WORKER_NAME) must be 1-64 letters, digits, ".", "_" or "-"',
    ),
  prefetch: z.coerce
    .number({ error: '--prefetch (WORKER_PREFETCH) must be a whole number from 0 to 8' })
    .int('--prefetch (WORKER_PREFETCH) must be a whole number from 0 to 8')
    .min(0, '--prefetch (WORKER_PREFETCH) must be a whole number from 0 to 8')
    .max(8, '--prefetch (WORKER_PREFETCH) must be a whole number from 0 to 8'),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
  graceSeconds: z.coerce.number().min(0, '--grace-seconds must be 0 or more').max(3600),
  frontendDir: z
    .string()
    .trim()
    .min(1)
    .refine(
      (d) => statSync(join(d, 'index.html'), { throwIfNoEntry: false })?.isFile() === true,
      '--frontend-dir (COMFYUI_FRONTEND_DIR) must be a folder holding index.html',
    )
    .transform((d) => resolve(d))
    .optional(),
  lorasDir: existingFolder(
    "--loras-dir (COMFYUI_LORAS_DIR) must be an existing folder (ComfyUI's models/loras)",
  ),
  /** ComfyUI's models folder: with it the agent downloads model files instructors add. */
  modelsDir: existingFolder(
    "--models-dir (COMFYUI_MODELS_DIR) must be ComfyUI's models folder (the one holding checkpoints/, loras/, ...)",
  ),
  /** ComfyUI's output folder on this machine: outputs are read from it instead of `/view`. */
  outputDir: existingFolder(
    "--output-dir (COMFYUI_OUTPUT_DIR) must be ComfyUI's output folder (its --output-directory, default <ComfyUI>/output)",
  ),
  frontendMirror: z
    .enum(['true', 'false', '1', '0', 'yes', 'no'], {
      error: 'WORKER_FRONTEND_MIRROR must be true or false',
    })
    .transform((v) => v === 'true' || v === '1' || v === 'yes'),
  templateMirror: z
    .enum(['true', 'false', '1', '0', 'yes', 'no'], {
      error: 'WORKER_TEMPLATE_MIRROR must be true or false',
    })
    .transform((v) => v === 'true' || v === '1' || v === 'yes'),
  /** Seconds without a job after which the agent stops and exits 0 (an ephemeral worker); 0 = never. */
  exitWhenIdle: z.coerce
    .number({
      error: '--exit-when-idle (WORKER_EXIT_WHEN_IDLE_SECONDS) must be whole seconds from 0 to 86400',
    })
    .int('--exit-when-idle (WORKER_EXIT_WHEN_IDLE_SECONDS) must be whole seconds from 0 to 86400')
    .min(0, '--exit-when-idle (WORKER_EXIT_WHEN_IDLE_SECONDS) must be whole seconds from 0 to 86400')
    .max(86_400, '--exit-when-idle (WORKER_EXIT_WHEN_IDLE_SECONDS) must be whole seconds from 0 to 86400'),
  provider: z
    .string()
    .trim()
    .regex(
      /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/,
      '--provider (WORKER_PROVIDER) must be 1-64 letters, digits, ".", "_" or "-"',
    )
    .optional(),
  instance: z
    .string()
    .trim()
    .regex(
      /^[\x21-\x7e]{1,256}$/,
      '--instance (WORKER_INSTANCE) must be 1-256 printable characters without spaces',
    )
    .optional(),
});
export type WorkerArgs = z.output<typeof workerArgsSchema>;

interface WorkerFlags {
  server?: string;
  token?: string;
  comfyui?: string;
  name?: string;
  prefetch?: string;
  logLevel?: string;
  graceSeconds?: string;
  frontendDir?: string;
  modelsDir?: string;
  outputDir?: string;
  lorasDir?: string;
  /** Commander's `--no-frontend-mirror`: false when given, else true. */
  frontendMirror?: boolean;
  /** Commander's `--no-template-mirror`: false when given, else true. */
  templateMirror?: boolean;
  exitWhenIdle?: string;
  provider?: string;
  instance?: string;
}

const blank = (v: string | undefined) => (v === undefined || v.trim() === '' ? undefined : v);

/** Flags, then environment, then defaults. Returns the parsed args or one message per bad field. */
export function resolveWorkerArgs(
  flags: WorkerFlags,
  env: NodeJS.ProcessEnv,
): { ok: true; args: WorkerArgs } | { ok: false; errors: string[] } {
  const raw = {
    server: blank(flags.server) ?? blank(env.COMFY_MULTI_SERVER),
    token: blank(flags.token) ?? blank(env.COMFY_MULTI_TOKEN),
    comfyui: blank(flags.comfyui) ?? blank(env.COMFYUI_URL) ?? 'http://127.0.0.1:8188',
    name: blank(flags.name) ?? blank(env.WORKER_NAME) ?? defaultName(env),
    prefetch: blank(flags.prefetch) ?? blank(env.WORKER_PREFETCH) ?? '1',
    logLevel: blank(flags.logLevel) ?? blank(env.LOG_LEVEL) ?? 'info',
    graceSeconds: blank(flags.graceSeconds) ?? blank(env.WORKER_GRACE_SECONDS) ?? '30',
    frontendDir: blank(flags.frontendDir) ?? blank(env.COMFYUI_FRONTEND_DIR),
    modelsDir: blank(flags.modelsDir) ?? blank(env.COMFYUI_MODELS_DIR),
    outputDir: blank(flags.outputDir) ?? blank(env.COMFYUI_OUTPUT_DIR),
    lorasDir: blank(flags.lorasDir) ?? blank(env.COMFYUI_LORAS_DIR),
    frontendMirror:
      flags.frontendMirror === false
        ? 'false'
        : (blank(env.WORKER_FRONTEND_MIRROR)?.trim().toLowerCase() ?? 'true'),
    templateMirror:
      flags.templateMirror === false
        ? 'false'
        : (blank(env.WORKER_TEMPLATE_MIRROR)?.trim().toLowerCase() ?? 'true'),
    exitWhenIdle: blank(flags.exitWhenIdle) ?? blank(env.WORKER_EXIT_WHEN_IDLE_SECONDS) ?? '0',
    provider: blank(flags.provider) ?? blank(env.WORKER_PROVIDER),
    instance: blank(flags.instance) ?? blank(env.WORKER_INSTANCE),
  };
  const r = workerArgsSchema.safeParse(raw);
  if (r.success) {
    if ((r.data.provider || r.data.instance) && r.data.exitWhenIdle === 0) {
      return {
        ok: false,
        errors: ['--provider and --instance describe an ephemeral worker: set --exit-when-idle too'],
      };
    }
    return { ok: true, args: r.data };
  }
  // Messages name the field; values are never echoed (one of them is the token).
  return { ok: false, errors: r.error.issues.map((i) => i.message) };
}

function defaultName(env: NodeJS.ProcessEnv): string {
  // A serverless replica (RunPod sets RUNPOD_POD_ID in pods and serverless workers) is named after
  // itself, so two replicas of one endpoint never share a name.
  const host = (blank(env.RUNPOD_POD_ID) ? `runpod-${env.RUNPOD_POD_ID}` : (env.HOSTNAME ?? 'worker'))
    .replace(/[^A-Za-z0-9._-]/g, '-')
    .replace(/^[^A-Za-z0-9]+/, '');
  return host.slice(0, 64) || 'worker';
}

export function registerWorker(program: Command): void {
  program
    .command('worker')
    .description('run a worker agent beside one ComfyUI: it connects out to the control plane and runs jobs')
    .option('--server <url>', 'control plane URL (env COMFY_MULTI_SERVER)')
    .option(
      '--token <token>',
      'worker token (env COMFY_MULTI_TOKEN; prefer the env var, flags show up in ps)',
    )
    .option('--comfyui <url>', 'ComfyUI URL (env COMFYUI_URL, default http://127.0.0.1:8188)')
    .option('--name <name>', 'worker name shown to instructors (env WORKER_NAME, default the host name)')
    .option(
      '--prefetch <n>',
      "jobs held in ComfyUI's queue besides the running one, 0-8 (env WORKER_PREFETCH, default 1)",
    )
    .option(
      '--log-level <level>',
      'fatal, error, warn, info, debug, trace or silent (env LOG_LEVEL, default info)',
    )
    .option(
      '--grace-seconds <s>',
      'on SIGTERM, how long a running job may finish before it is handed back (env WORKER_GRACE_SECONDS, default 30)',
    )
    .option(
      '--frontend-dir <dir>',
      'offer the ComfyUI web frontend from this folder (e.g. comfyui_frontend_package/static) instead of reading it from ComfyUI (env COMFYUI_FRONTEND_DIR)',
    )
    .option(
      '--loras-dir <dir>',
      "ComfyUI's models/loras folder: participants' own LoRAs are put in its _users/ folder for their jobs, cached by sha256 (env COMFYUI_LORAS_DIR; without it such jobs fail on this worker)",
    )
    .option(
      '--models-dir <dir>',
      "ComfyUI's models folder (holding checkpoints/, loras/, ...): model files instructors add from the dashboard are downloaded into it (env COMFYUI_MODELS_DIR; default none = no downloads)",
    )
    .option(
      '--output-dir <dir>',
      "ComfyUI's output folder on this machine (its --output-directory, default <ComfyUI>/output): outputs are read from it instead of through ComfyUI's /view, which a busy ComfyUI serves slowly (env COMFYUI_OUTPUT_DIR; default none = /view)",
    )
    .option(
      '--no-frontend-mirror',
      'never offer the ComfyUI web frontend to the control plane (env WORKER_FRONTEND_MIRROR=false)',
    )
    .option(
      '--no-template-mirror',
      "never offer ComfyUI's template library (the comfyui-workflow-templates package) to the control plane (env WORKER_TEMPLATE_MIRROR=false)",
    )
    .option(
      '--exit-when-idle <seconds>',
      'ephemeral worker: after this many seconds without a job, stop gracefully and exit 0 (env WORKER_EXIT_WHEN_IDLE_SECONDS, default 0 = never)',
    )
    .option(
      '--provider <name>',
      'ephemeral worker: the provider that started it, told to the control plane (env WORKER_PROVIDER, default "manual")',
    )
    .option(
      '--instance <id>',
      "ephemeral worker: the provider's instance id (env WORKER_INSTANCE, default the worker name)",
    )
    .action(async (flags: WorkerFlags) => {
      const resolved = resolveWorkerArgs(flags, process.env);
      if (!resolved.ok) {
        for (const e of resolved.errors) process.stderr.write(`error: ${e}\n`);
        process.exit(2);
      }
      const { args } = resolved;
      const logger = createLogger(args.logLevel).child({ worker: args.name });
      const agent = startAgent({
        serverUrl: args.server,
        token: args.token,
        comfyuiUrl: args.comfyui,
        name: args.name,
        prefetch: args.prefetch,
        logger,
        mirrorFrontend: args.frontendMirror,
        mirrorTemplates: args.templateMirror,
        ...(args.frontendDir ? { frontendDir: args.frontendDir } : {}),
        ...(args.modelsDir ? { modelsDir: args.modelsDir } : {}),
        ...(args.outputDir ? { outputDir: args.outputDir } : {}),
        ...(args.lorasDir ? { lorasDir: args.lorasDir } : {}),
        ...(args.exitWhenIdle > 0
          ? {
              ephemeral: {
                provider: args.provider ?? 'manual',
                instance: args.instance ?? args.name,
                exitWhenIdleSeconds: args.exitWhenIdle,
              },
              exitWhenIdleMs: args.exitWhenIdle * 1000,
              // Exit 0: the GPU image's supervisor then stops ComfyUI too and ends the container.
              onIdle: () => stop('idle'),
            }
          : {}),
        // Reconnecting with a revoked token is pointless: exit with EX_CONFIG (78), which a service
        // manager should not restart (systemd: RestartPreventExitStatus=78).
        onRevoked: () => {
          logger.error('worker token revoked; exiting with status 78 (configuration error)');
          void agent.stop({ graceMs: 0 }).finally(() => process.exit(78));
        },
      });
      logger.info(
        {
          server: args.server,
          comfyui: args.comfyui,
          prefetch: args.prefetch,
          frontendMirror: args.frontendMirror,
          templateMirror: args.templateMirror,
          ...(args.frontendDir ? { frontendDir: args.frontendDir } : {}),
          ...(args.modelsDir ? { modelsDir: args.modelsDir } : {}),
          ...(args.outputDir ? { outputDir: args.outputDir } : {}),
          ...(args.lorasDir ? { lorasDir: args.lorasDir } : {}),
          ...(args.exitWhenIdle > 0
            ? { exitWhenIdleSeconds: args.exitWhenIdle, provider: args.provider ?? 'manual' }
            : {}),
        },
        'worker agent started',
      );

      let stopping = false;
      function stop(signal: string): void {
        if (stopping) {
          logger.warn({ signal }, 'second signal: handing back jobs and exiting now');
          agent.stop({ graceMs: 0 }).finally(() => process.exit(0));
          return;
        }
        stopping = true;
        logger.info(
          { signal, graceSeconds: args.graceSeconds },
          'stopping: no new jobs; a running job may finish',
        );
        agent.stop({ graceMs: args.graceSeconds * 1000 }).then(
          () => process.exit(0),
          (err: unknown) => {
            logger.error({ err }, 'stop failed');
            process.exit(1);
          },
        );
      }
      process.on('SIGTERM', () => stop('SIGTERM'));
      process.on('SIGINT', () => stop('SIGINT'));
    });
}
