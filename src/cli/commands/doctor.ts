/**
 * `comfy-multi doctor`: one line per check, each warning and failure with its fix; exit 0 when
 * nothing failed (warnings allowed), 1 when something failed, 2 on bad configuration.
 * The checks themselves live in src/doctor/.
 */
import type { Command } from 'commander';
import { ConfigError, loadConfig, readEnv } from '../../config/load-config.js';
import type { Config } from '../../config/schema.js';
import { openFileStore } from '../../files/index.js';
import { WorkshopTemplates } from '../../templates/workshop-templates.js';
import { TemplateSource } from '../../gateway/templates.js';
import { openStore } from '../../store/index.js';
import type { JobStore } from '../../store/types.js';
import {
  checkCertificate,
  checkClock,
  checkDisk,
  checkFileStore,
  checkFrontend,
  checkInstructor,
  checkPublicUrl,
  checkStore,
  checkTemplateModels,
  checkWorkers,
  type CheckResult,
  type ServerView,
} from '../../doctor/checks.js';
import { authOf, serverOf } from './status.js';
import { isLocalOnly } from '../../config/public-url.js';

export const DOCTOR_EXIT = { OK: 0, FAILED: 1, CONFIG: 2 } as const;

export interface DoctorFlags {
  server?: string;
  token?: string;
  json?: boolean;
}

export interface DoctorIo {
  out(s: string): void;
}

const MARK = { ok: 'ok  ', warn: 'WARN', fail: 'FAIL', skip: 'skip' } as const;

export function formatCheck(r: CheckResult): string {
  const line = `${MARK[r.status]}  ${r.name.padEnd(11)} ${r.message}`;
  return r.fix ? `${line}\n      ${''.padEnd(11)} → ${r.fix}` : line;
}

async function askServer(
  flags: DoctorFlags,
  env: NodeJS.ProcessEnv,
): Promise<{ view: ServerView | null; result: CheckResult; server: string }> {
  const server = serverOf(flags, env);
  const auth = authOf(flags, env);
  try {
    const health = await fetch(`${server}/health`, { signal: AbortSignal.timeout(5000) });
    if (!health.ok) throw new Error(`/health answered ${health.status}`);
  } catch (err) {
    return {
      view: null,
      server,
      result: {
        name: 'server',
        status: 'fail',
        message: `no control plane answers at ${server} (${(err as Error).message}).`,
        fix: 'Start it (`npm start`, `systemctl start comfy-multi`), or give --server.',
      },
    };
  }
  if (!auth) {
    return {
      view: null,
      server,
      result: {
        name: 'server',
        status: 'skip',
        message: `${server} is up; give an instructor login (ADMIN_PASSWORD, or COMFY_MULTI_USER and COMFY_MULTI_PASSWORD) or --token to check workers and models.`,
      },
    };
  }
  const get = async (path: string): Promise<unknown> => {
    const res = await fetch(`${server}${path}`, {
      headers: { authorization: auth, accept: 'application/json' },
      signal: AbortSignal.timeout(10_000),
    });
    if (res.status === 401 || res.status === 403) throw new Error('it refused the instructor login');
    return res.json();
  };
  try {
    const status = (await get('/api/v1/status')) as ServerView['status'];
    const workers = (await get('/api/v1/workers')) as ServerView['workers'];
    const view = { status, workers: Array.isArray(workers) ? workers : [] };
    const result: CheckResult = status.healthy
      ? { name: 'server', status: 'ok', message: `${server} is healthy.` }
      : {
          name: 'server',
          status: 'warn',
          message: `${server} reports: ${status.problems.join(' ')}`,
          fix: 'See `comfy-multi status` and the dashboard.',
        };
    return { view, result, server };
  } catch (err) {
    return {
      view: null,
      server,
      result: {
        name: 'server',
        status: 'fail',
        message: `${server} is up but ${(err as Error).message}.`,
        fix: 'Check the instructor password or API token.',
      },
    };
  }
}

function clockTargets(config: Config, server: string): { name: string; url: string }[] {
  const out: { name: string; url: string }[] = [];
  if (config.FILES === 's3' && config.S3_ENDPOINT) out.push({ name: 'S3', url: config.S3_ENDPOINT });
  if (!isLocalOnly(server)) out.push({ name: 'server', url: `${server}/health` });
  return out;
}

/** Runs every check in order and prints them; returns the exit code. */
export async function runDoctor(flags: DoctorFlags, env: NodeJS.ProcessEnv, io: DoctorIo): Promise<number> {
  const results: CheckResult[] = [];
  const report = (r: CheckResult) => {
    results.push(r);
    if (!flags.json) io.out(`${formatCheck(r)}\n`);
  };
  let config: Config;
  try {
    config = loadConfig(readEnv(env));
    report({
      name: 'config',
      status: 'ok',
      message: `valid (STORE=${config.STORE}, FILES=${config.FILES}).`,
    });
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    report({
      name: 'config',
      status: 'fail',
      message: err.message.replace(/\n/g, ' '),
      fix: 'See docs/configuration.md.',
    });
    if (flags.json) io.out(`${JSON.stringify({ ok: false, checks: results }, null, 2)}\n`);
    return DOCTOR_EXIT.CONFIG;
  }

  let store: JobStore | null = null;
  try {
    store = await openStore(config);
  } catch (err) {
    report({
      name: 'store',
      status: 'fail',
      message: `cannot open ${config.STORE}: ${(err as Error).message}.`,
      fix: 'Start Redis or fix REDIS_URL / DATA_DIR.',
    });
  }
  try {
    if (store) {
      report(await checkStore(store, config));
      report(await checkInstructor(store));
    }
    const files = await openFileStore(config);
    try {
      report(await checkFileStore(files));
    } finally {
      files.close?.();
    }
    report(await checkDisk(config.DATA_DIR));
    report(await checkCertificate(config.TLS_CERT));
    report(await checkPublicUrl(config));
    const { view, result, server } = await askServer(flags, env);
    report(await checkClock(clockTargets(config, server)));
    report(result);
    report(checkWorkers(view));
    report(checkFrontend(view, config));
    if (store) {
      const templates = new TemplateSource(config.TEMPLATES_DIR ?? null, config.DEFAULT_WORKFLOW ?? null);
      report(await checkTemplateModels(templates, view, store, new WorkshopTemplates(store)));
    }
  } finally {
    await store?.close();
  }
  const failed = results.some((r) => r.status === 'fail');
  if (flags.json) io.out(`${JSON.stringify({ ok: !failed, checks: results }, null, 2)}\n`);
  else {
    const warned = results.filter((r) => r.status === 'warn').length;
    io.out(
      failed
        ? '\nSomething will fail: fix the FAIL lines first.\n'
        : warned
          ? `\nReady, with ${warned} warning(s).\n`
          : '\nReady.\n',
    );
  }
  return failed ? DOCTOR_EXIT.FAILED : DOCTOR_EXIT.OK;
}

export function registerDoctor(program: Command): void {
  program
    .command('doctor')
    .description(
      'check config, store, files, disk, certificate, clock, PUBLIC_URL, workers, frontend and template models',
    )
    .option(
      '--server <url>',
      'the running control plane (COMFY_MULTI_SERVER; default PUBLIC_URL or http://127.0.0.1:PORT)',
    )
    .option(
      '--token <token>',
      'API token (COMFY_MULTI_API_TOKEN); or an instructor login in ADMIN_PASSWORD / COMFY_MULTI_USER + COMFY_MULTI_PASSWORD',
    )
    .option('--json', 'print the results as JSON')
    .action(async (flags: DoctorFlags) => {
      process.exitCode = await runDoctor(flags, process.env, { out: (s) => process.stdout.write(s) });
    });
}
