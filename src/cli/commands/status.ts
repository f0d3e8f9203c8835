/**
 * `comfy-multi status`: asks a running control plane for `GET /api/v1/status` and prints a short
 * summary. Exit code 0 = healthy, 1 = unhealthy (store unreachable, jobs waiting with no usable
 * GPU worker, or the server cannot be reached), 2 = bad usage or credentials refused.
 */
import type { Command } from 'commander';
import { formatStatus, type PlatformStatus } from '../../admin/status.js';

export const STATUS_EXIT = { HEALTHY: 0, UNHEALTHY: 1, USAGE: 2 } as const;

export interface StatusFlags {
  server?: string;
  token?: string;
  json?: boolean;
  timeout?: string;
}

export interface StatusIo {
  out(s: string): void;
  err(s: string): void;
}

const blank = (v: string | undefined) => (v === undefined || v.trim() === '' ? undefined : v.trim());

export function serverOf(flags: StatusFlags, env: NodeJS.ProcessEnv): string {
  const explicit = blank(flags.server) ?? blank(env.COMFY_MULTI_SERVER) ?? blank(env.PUBLIC_URL);
  return (explicit ?? `http://127.0.0.1:${blank(env.PORT) ?? '8080'}`).replace(/\/+$/, '');
}

/** Bearer API token, else an instructor's name and password (COMFY_MULTI_USER/PASSWORD, or admin/ADMIN_PASSWORD). */
export function authOf(flags: StatusFlags, env: NodeJS.ProcessEnv): string | null {
  const token = blank(flags.token) ?? blank(env.COMFY_MULTI_API_TOKEN);
  if (token) return `Bearer ${token}`;
  const user = blank(env.COMFY_MULTI_USER) ?? (blank(env.ADMIN_PASSWORD) ? 'admin' : undefined);
  const password = env.COMFY_MULTI_PASSWORD ?? env.ADMIN_PASSWORD;
  if (user && password) return `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
  return null;
}

function isStatus(v: unknown): v is PlatformStatus {
  return (
    typeof v === 'object' &&
    v !== null &&
    typeof (v as PlatformStatus).healthy === 'boolean' &&
    'workers' in v
  );
}

/** Runs the command; returns the exit code (the caller sets it). */
export async function runStatus(flags: StatusFlags, env: NodeJS.ProcessEnv, io: StatusIo): Promise<number> {
  const server = serverOf(flags, env);
  let url: URL;
  try {
    url = new URL('/api/v1/status', server);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('not http');
  } catch {
    io.err(`error: --server must be an http(s) URL such as http://127.0.0.1:8080 (got ${server})\n`);
    return STATUS_EXIT.USAGE;
  }
  const auth = authOf(flags, env);
  if (!auth) {
    io.err(
      'error: give an API token (--token or COMFY_MULTI_API_TOKEN) or an instructor login ' +
        '(COMFY_MULTI_USER and COMFY_MULTI_PASSWORD)\n',
    );
    return STATUS_EXIT.USAGE;
  }
  const timeoutMs = Math.max(1, Number(flags.timeout ?? '10') || 10) * 1000;
  let res: Response;
  try {
    res = await fetch(url, {
      headers: { authorization: auth, accept: 'application/json' },
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (err) {
    const why =
      err instanceof Error && err.name === 'TimeoutError'
        ? `no answer within ${timeoutMs / 1000} s`
        : 'cannot connect';
    io.err(`comfy-multi at ${server}: UNREACHABLE (${why})\n`);
    return STATUS_EXIT.UNHEALTHY;
  }
  let body: unknown = null;
  try {
    body = await res.json();
  } catch {
    /* not JSON: handled below */
  }
  if (isStatus(body)) {
    io.out(flags.json ? `${JSON.stringify(body, null, 2)}\n` : formatStatus(body, server));
    return body.healthy ? STATUS_EXIT.HEALTHY : STATUS_EXIT.UNHEALTHY;
  }
  const error = (body as { error?: { code?: string; message?: string } } | null)?.error;
  if (res.status === 401 || res.status === 403) {
    io.err(
      `error: ${server} refused the credentials (${error?.code ?? res.status}): ${error?.message ?? ''}\n`,
    );
    return STATUS_EXIT.USAGE;
  }
  if (error?.code === 'STORE_UNAVAILABLE') {
    io.err(`comfy-multi at ${server}: UNHEALTHY — ${error.message ?? 'the state store cannot be reached'}\n`);
    return STATUS_EXIT.UNHEALTHY;
  }
  io.err(
    `comfy-multi at ${server}: UNHEALTHY — unexpected answer ${res.status}${error?.message ? `: ${error.message}` : ''}\n`,
  );
  return STATUS_EXIT.UNHEALTHY;
}

export function registerStatus(program: Command): void {
  program
    .command('status')
    .description('print the health of a running control plane; exits 1 when unhealthy, 2 on bad usage')
    .option(
      '--server <url>',
      'control plane URL (COMFY_MULTI_SERVER; default PUBLIC_URL or http://127.0.0.1:PORT)',
    )
    .option(
      '--token <token>',
      'API token from API_TOKENS (COMFY_MULTI_API_TOKEN); or set COMFY_MULTI_USER and COMFY_MULTI_PASSWORD',
    )
    .option('--json', 'print the JSON status instead of a summary')
    .option('--timeout <seconds>', 'give up after this long', '10')
    .action(async (flags: StatusFlags) => {
      process.exitCode = await runStatus(flags, process.env, {
        out: (s) => process.stdout.write(s),
        err: (s) => process.stderr.write(s),
      });
    });
}
