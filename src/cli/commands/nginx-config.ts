import type { Command } from 'commander';
import { ZodError } from 'zod';
import { renderNginxConfig } from '../../http/nginx-config.js';
import { VERSION } from '../../version.js';
import { cliConfig, fail } from '../context.js';

interface Flags {
  serverName?: string;
  upstream?: string[];
  cert?: string;
  key?: string;
  listen?: string;
  redirect?: string | boolean;
}

export function registerNginxConfig(program: Command): void {
  program
    .command('nginx-config')
    .description('print an nginx site that proxies to this control plane (HTTPS, WebSockets, uploads)')
    .option('--server-name <names>', 'nginx server_name: your host name(s), space-separated', '_')
    .option(
      '--upstream <host:port>',
      'where the control plane listens (default 127.0.0.1:PORT); repeat for several processes (docs/scaling.md)',
      (value: string, previous: string[] | undefined) => [...(previous ?? []), value],
    )
    .option('--cert <file>', 'PEM certificate with chain (e.g. fullchain.pem) for nginx to serve HTTPS')
    .option('--key <file>', 'PEM private key of --cert (e.g. privkey.pem)')
    .option('--listen <[addr:]port>', 'listen address of the site (default 443 with --cert, else 80)')
    .option(
      '--redirect <[addr:]port>',
      'with --cert: plain-HTTP listener that redirects to https (default 80)',
    )
    .option('--no-redirect', 'with --cert: no plain-HTTP redirect server')
    .action((flags: Flags) => {
      const config = cliConfig();
      const host = config.HOST === '0.0.0.0' || config.HOST === '::' ? '127.0.0.1' : config.HOST;
      if (config.TLS_CERT) {
        process.stderr.write(
          'warning: TLS_CERT is set, so the control plane speaks HTTPS itself; behind nginx, unset TLS_CERT and TLS_KEY.\n',
        );
      }
      try {
        process.stdout.write(
          renderNginxConfig({
            serverName: flags.serverName ?? '_',
            upstream: flags.upstream ?? [`${host.includes(':') ? `[${host}]` : host}:${config.PORT}`],
            cert: flags.cert,
            key: flags.key,
            listen: flags.listen,
            redirectListen:
              flags.redirect === false
                ? null
                : typeof flags.redirect === 'string'
                  ? flags.redirect
                  : undefined,
            bodyLimit: Math.max(
              config.UPLOAD_LIMIT,
              config.BODY_LIMIT,
              config.LORA_UPLOAD_LIMIT + 1024 * 1024,
            ),
            workerUploadLimit: config.OUTPUT_UPLOAD_LIMIT,
            version: VERSION,
          }),
        );
      } catch (err) {
        if (!(err instanceof ZodError)) throw err;
        const flag: Record<string, string> = {
          serverName: '--server-name',
          upstream: '--upstream',
          cert: '--cert',
          key: '--key',
          listen: '--listen',
          redirectListen: '--redirect',
        };
        const issue = err.issues[0]!;
        const name = String(issue.path[0] ?? '');
        fail(`${flag[name] ?? name}: ${issue.message}`, 2);
      }
    });
}
