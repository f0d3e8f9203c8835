/**
 * `comfy-multi usage --csv`: fetches GPU time and cost per worker, UTC day and participant from a
 * running control plane (`GET /api/v1/autoscale/usage.csv`, instructors) and prints the CSV — for
 * the bill after the workshop. Exit 0 on success, 1 when the server cannot be reached or answers
 * otherwise, 2 on bad usage or refused credentials. Server and credentials as `comfy-multi status`.
 */
import type { Command } from 'commander';
import { authOf, serverOf, type StatusIo } from './status.js';

export interface UsageFlags {
  server?: string;
  token?: string;
  csv?: boolean;
  day?: string;
  timeout?: string;
}

export async function runUsage(flags: UsageFlags, env: NodeJS.ProcessEnv, io: StatusIo): Promise<number> {
  if (flags.day !== undefined && !/^\d{4}-\d{2}-\d{2}$/.test(flags.day)) {
    io.err(`error: --day must be YYYY-MM-DD (got ${flags.day})\n`);
    return 2;
  }
  const server = serverOf(flags, env);
  let url: URL;
  try {
    url = new URL('/api/v1/autoscale/usage.csv', server);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('not http');
  } catch {
    io.err(`error: --server must be an http(s) URL such as http://127.0.0.1:8080 (got ${server})\n`);
    return 2;
  }
  if (flags.day) url.searchParams.set('day', flags.day);
  const auth = authOf(flags, env);
  if (!auth) {
    io.err(
      'error: give an API token (--token or COMFY_MULTI_API_TOKEN) or an instructor login ' +
        '(COMFY_MULTI_USER and COMFY_MULTI_PASSWORD)\n',
    );
    return 2;
  }
  const timeoutMs = Math.max(1, Number(flags.timeout ?? '30') || 30) * 1000;
  let res: Response;
  try {
    res = await fetch(url, { headers: { authorization: auth }, signal: AbortSignal.timeout(timeoutMs) });
  } catch {
    io.err(`error: cannot reach comfy-multi at ${server}\n`);
    return 1;
  }
  const text = await res.text();
  if (res.ok) {
    io.out(text);
    return 0;
  }
  let message = '';
  try {
    message = (JSON.parse(text) as { error?: { message?: string } }).error?.message ?? '';
  } catch {
    /* not JSON */
  }
  io.err(`error: ${server} answered ${res.status}${message ? `: ${message}` : ''}\n`);
  return res.status === 401 || res.status === 403 ? 2 : 1;
}

export function registerUsage(program: Command): void {
  program
    .command('usage')
    .description('print GPU time and cost per worker, day and participant of a running control plane as CSV')
    .option('--csv', 'CSV (the only format)')
    .option('--day <YYYY-MM-DD>', 'one UTC day only')
    .option(
      '--server <url>',
      'control plane URL (COMFY_MULTI_SERVER; default PUBLIC_URL or http://127.0.0.1:PORT)',
    )
    .option(
      '--token <token>',
      'API token (COMFY_MULTI_API_TOKEN); or COMFY_MULTI_USER and COMFY_MULTI_PASSWORD',
    )
    .option('--timeout <seconds>', 'give up after this long', '30')
    .action(async (flags: UsageFlags) => {
      process.exitCode = await runUsage(flags, process.env, {
        out: (s) => process.stdout.write(s),
        err: (s) => process.stderr.write(s),
      });
    });
}
