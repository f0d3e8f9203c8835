/**
 * A private nginx for end-to-end tests (the nginx proof and the cluster harness): its binary, and
 * the main nginx.conf that runs it in the foreground without root, with every temp path, log and
 * the pid under one folder and the site from `comfy-multi nginx-config` included.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Debian's nginx, if installed (the tests that need it fail with how to install it). */
export const NGINX_BIN = ['/usr/sbin/nginx', '/usr/bin/nginx'].find((p) => existsSync(p));

/**
 * Writes `site` (what `comfy-multi nginx-config` prints) to `dir/comfy-multi.conf`, a main
 * `dir/nginx.conf` that includes it, and nginx's temp folders; returns the arguments that run
 * nginx with it.
 */
export function writeNginxConfig(
  dir: string,
  site: string,
  opts: { errorLogLevel: 'info' | 'warn'; workerConnections: number; rlimitNofile?: number },
): string[] {
  for (const t of ['body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) mkdirSync(join(dir, t), { recursive: true });
  writeFileSync(join(dir, 'comfy-multi.conf'), site);
  writeFileSync(
    join(dir, 'nginx.conf'),
    [
      'daemon off;',
      'master_process off;',
      `pid ${dir}/nginx.pid;`,
      `error_log ${dir}/error.log ${opts.errorLogLevel};`,
      ...(opts.rlimitNofile ? [`worker_rlimit_nofile ${opts.rlimitNofile};`] : []),
      `events { worker_connections ${opts.workerConnections}; }`,
      'http {',
      `  access_log ${dir}/access.log;`,
      `  client_body_temp_path ${dir}/body;`,
      `  proxy_temp_path ${dir}/proxy;`,
      `  fastcgi_temp_path ${dir}/fastcgi;`,
      `  uwsgi_temp_path ${dir}/uwsgi;`,
      `  scgi_temp_path ${dir}/scgi;`,
      `  include ${dir}/comfy-multi.conf;`,
      '}',
      '',
    ].join('\n'),
  );
  return ['-p', dir, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'error.log')];
}
