/**
 * The steps every end-to-end test of the real `comfy-multi serve` process repeats: start it and
 * wait until it answers, add a participant through the CLI, and the Basic credentials to use.
 */
import { Processes, waitFor, type Proc } from './processes.js';

/**
 * Starts `serve` with `env` and waits until `ready` holds (by default: plain-HTTP `/health` on
 * `env.PORT` answers 200).
 */
export async function startServe(
  procs: Processes,
  env: Record<string, string>,
  opts: { ready?: () => Promise<boolean>; timeoutMs?: number; what?: string } = {},
): Promise<Proc> {
  const p = procs.run('serve', ['src/cli/index.ts', 'serve'], env);
  const ready = opts.ready ?? (async () => (await fetch(`http://127.0.0.1:${env.PORT}/health`)).ok);
  await waitFor(ready, opts.timeoutMs ?? 30_000, opts.what ?? 'the control plane');
  return p;
}

/**
 * `comfy-multi users add <user> --password-stdin` against the same DATA_DIR as the server; an
 * account added while the server runs takes effect at once. Throws with the CLI's output if it fails.
 */
export async function addUser(
  procs: Processes,
  env: Record<string, string>,
  user: string,
  password: string,
): Promise<void> {
  const add = procs.run(
    'users-add',
    ['src/cli/index.ts', 'users', 'add', user, '--password-stdin'],
    env,
    `${password}\n`,
  );
  const code = await add.exited;
  if (code !== 0) throw new Error(`users add ${user} exited with ${code}: ${add.log.join('')}`);
}

/** The `Authorization` header value for HTTP Basic. */
export function basicAuth(user: string, password: string): string {
  return `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
}

/**
 * A JSON request to a running server as `authorization`: the status and the parsed answer (null
 * when it is empty), whatever the status, so a test can assert on refusals too.
 */
export async function jsonRequest<T>(
  serverUrl: string,
  authorization: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; json: T }> {
  const res = await fetch(`${serverUrl}${path}`, {
    method,
    headers: { authorization, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  return { status: res.status, json: (text ? JSON.parse(text) : null) as T };
}
