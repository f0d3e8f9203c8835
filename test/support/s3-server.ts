/**
 * Starts a private S3-compatible server for tests: the `s3rver` package run as a child process (not
 * in-process, so the code under test talks real HTTP to a real server), on a free port chosen by
 * the OS, with a temporary data directory, and with the test buckets created before it answers.
 *
 * s3rver accepts the access key `S3RVER` (secret `S3RVER`) and rejects other access key ids with
 * `InvalidAccessKeyId`; it does not verify Signature V4 signatures themselves (so a wrong secret
 * alone is not detected — tests of "wrong credentials" use a wrong access key id).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { waitForExit } from './processes.js';

export const S3RVER_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } as const;

export interface S3ServerOptions {
  /** Buckets to create at start-up. Default `['test']`. */
  buckets?: string[];
  /** How long to wait for the server to listen. Default 15 s. */
  startTimeoutMs?: number;
}

export interface S3ServerHandle {
  /** `http://127.0.0.1:<port>`; use with `forcePathStyle: true`. */
  endpoint: string;
  port: number;
  /** The server's data directory (`<dir>/<bucket>/...`). */
  dir: string;
  pid: number;
  /** Environment variables that point the SDK (and `comfy-multi`) at this server. */
  env: Record<string, string>;
  /** SIGTERM, then SIGKILL; removes the data directory. Idempotent. */
  stop(): Promise<void>;
}

const live = new Set<ChildProcess>();
let exitHookInstalled = false;

function s3rverBin(): string {
  const require = createRequire(import.meta.url);
  return path.join(path.dirname(require.resolve('s3rver/package.json')), 'bin', 's3rver.js');
}

/** Starts s3rver on 127.0.0.1 and a free port and waits until it listens. */
export async function startS3Server(opts: S3ServerOptions = {}): Promise<S3ServerHandle> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'comfy-multi-s3rver-'));
  const buckets = opts.buckets ?? ['test'];
  // Port 0: the OS picks a free port and s3rver prints it, so there is no probe-then-bind race.
  // s3rver's ListObjectsV2 continuation tokens use DES, which OpenSSL 3 only offers as legacy.
  const args = [
    '--openssl-legacy-provider',
    s3rverBin(),
    '-d',
    dir,
    '-a',
    '127.0.0.1',
    '-p',
    '0',
    '--silent',
    '--no-vhost-buckets',
  ];
  for (const b of buckets) args.push('--configure-bucket', b);
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', () => {
      for (const c of live) c.kill('SIGKILL');
    });
  }
  child.once('exit', () => live.delete(child));

  let output = '';
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`s3rver did not start in time:\n${output.trim()}`));
    }, opts.startTimeoutMs ?? 15_000);
    const onData = (d: Buffer): void => {
      output = (output + d.toString('utf8')).slice(-4000);
      const m = /listening on [^:\s]+:(\d+)/.exec(output);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`could not run s3rver: ${err.message}`));
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`s3rver exited during start-up (${code ?? signal}):\n${output.trim()}`));
    });
  }).catch((err: unknown) => {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  });

  const endpoint = `http://127.0.0.1:${port}`;
  let stopping: Promise<void> | undefined;
  return {
    endpoint,
    port,
    dir,
    pid: child.pid ?? -1,
    env: {
      AWS_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey,
      AWS_REGION: 'us-east-1',
      S3_ENDPOINT: endpoint,
      S3_REGION: 'us-east-1',
      S3_FORCE_PATH_STYLE: 'true',
    },
    stop: () =>
      (stopping ??= (async () => {
        if (child.exitCode === null && child.signalCode === null) {
          child.kill('SIGTERM');
          if (!(await waitForExit(child, 5000))) {
            child.kill('SIGKILL');
            await waitForExit(child, 5000);
          }
        }
        rmSync(dir, { recursive: true, force: true });
      })()),
  };
}
