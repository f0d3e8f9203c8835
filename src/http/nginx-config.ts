/**
 * An nginx site for running comfy-multi behind nginx: `comfy-multi nginx-config` prints it, the
 * container images build theirs from it. Pure: options in, text out; nothing here reads config.
 *
 * What it must get right (each checked by test/e2e/nginx.e2e.test.ts through a real nginx):
 * WebSocket upgrades on every path (/<user>/ws, the dashboard, /worker/v1/ws); body sizes just above
 * the server's own limits, so the server's JSON 413 is what clients see; no request buffering
 * (uploads stream) and long timeouts (videos, idle sockets); X-Forwarded-* for TRUST_PROXY; and the
 * request URI passed on exactly as sent, because ComfyUI asks for `/api/userdata/a%2Fb.json`.
 */
import { z } from 'zod';

const MIB = 1024 * 1024;

/** Characters nginx would treat as syntax; refusing them keeps user input from adding directives. */
const NO_SYNTAX = /^[^\s;{}"'$\\#]+$/;

const upstreamAddress = z
  .string()
  .regex(
    /^(?:(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5}|unix:\/[^\s;{}"'$\\#]+)$/,
    'expected host:port such as 127.0.0.1:8080',
  );

export const nginxConfigOptions = z
  .object({
    /** nginx `server_name`: one or more names separated by spaces; `_` matches any. */
    serverName: z
      .string()
      .regex(
        /^[A-Za-z0-9.*_~-]+(?: [A-Za-z0-9.*_~-]+)*$/,
        'expected host names separated by spaces, e.g. workshop.example.org',
      )
      .default('_'),
    /**
     * host:port of the control plane (HOST/PORT), or unix:/path; several for several processes on
     * one Redis and one bucket (docs/scaling.md): nginx spreads requests over them, no stickiness.
     */
    upstream: z
      .union([upstreamAddress, z.array(upstreamAddress).min(1).max(64)])
      .transform((u) => [...new Set(Array.isArray(u) ? u : [u])]),
    /** PEM certificate (chain included) and key for nginx to serve HTTPS; both or neither. */
    cert: z.string().regex(NO_SYNTAX, 'a path without spaces, quotes, ; { } $ # or \\').optional(),
    key: z.string().regex(NO_SYNTAX, 'a path without spaces, quotes, ; { } $ # or \\').optional(),
    /** `listen` address of the main server; default 443 (with cert) or 80 (without). */
    listen: z
      .string()
      .regex(/^(?:\[[0-9A-Fa-f:.]+\]:|[0-9.]+:|[A-Za-z0-9.-]+:)?\d{1,5}$/, 'expected [address:]port')
      .optional(),
    /** `listen` of a plain-HTTP server that redirects to https (with cert); default 80; null for none. */
    redirectListen: z
      .string()
      .regex(/^(?:\[[0-9A-Fa-f:.]+\]:|[0-9.]+:|[A-Za-z0-9.-]+:)?\d{1,5}$/, 'expected [address:]port')
      .nullable()
      .optional(),
    /** Largest participant request body in bytes: max(UPLOAD_LIMIT, BODY_LIMIT, LORA_UPLOAD_LIMIT + a form's room). */
    bodyLimit: z.number().int().positive(),
    /** Largest worker output upload in bytes: OUTPUT_UPLOAD_LIMIT. */
    workerUploadLimit: z.number().int().positive(),
    /** Printed in the header comment. */
    version: z.string().default(''),
  })
  .refine((o) => !o.cert === !o.key, { message: 'give both --cert and --key, or neither', path: ['cert'] });

export type NginxConfigOptions = z.input<typeof nginxConfigOptions>;

/** nginx size for a limit: whole MiB, one above the server's limit (multipart headers, rounding). */
export function nginxSize(bytes: number): string {
  return `${Math.ceil(bytes / MIB) + 1}m`;
}

function portOf(listen: string): string {
  return /(\d+)$/.exec(listen)![1]!;
}

function listenLines(listen: string | undefined, fallback: number, ssl: boolean): string[] {
  const suffix = ssl ? ' ssl' : '';
  if (listen) return [`listen ${listen}${suffix};`];
  return [`listen ${fallback}${suffix};`, `listen [::]:${fallback}${suffix};`];
}

const indent = (lines: string[], by = '    ') => lines.map((l) => (l ? by + l : l));

/** The `upstream` block: one control-plane process, or several sharing Redis and a bucket. */
function upstreamBlock(servers: string[]): string[] {
  if (servers.length === 1)
    return ['upstream comfy_multi {', `    server ${servers[0]};`, '    keepalive 16;', '}', ''];
  return [
    '# Several control-plane processes on one Redis (STORE=redis) and one bucket (FILES=s3): any of',
    '# them serves any request, so no sticky sessions (no ip_hash, no cookie). max_fails=0: nginx never',
    '# marks a process down (one restarting while another was killed a moment before would leave none',
    '# and answer 502 to everyone); each request that meets a refused connection goes to the next.',
    'upstream comfy_multi {',
    ...servers.map((s) => `    server ${s} max_fails=0;`),
    '    keepalive 32;',
    '    # nginx, not the process, closes idle connections (a draining process waits for that): no',
    '    # request is ever sent on a connection the process is closing at the same moment.',
    '    keepalive_timeout 4s;',
    '}',
    '',
  ];
}

/**
 * Several processes: a request that meets a process being restarted or killed goes to the next one.
 * nginx repeats only what is safe to repeat: GET/HEAD/PUT/DELETE/OPTIONS on any of these, POST and
 * PATCH only when the connection failed before the request was sent (a draining process refuses
 * new connections, so that is what a rolling restart looks like). `non_idempotent` is deliberately
 * absent: a POST /prompt that reached a process killed mid-answer may have been queued.
 */
function nextUpstreamLines(): string[] {
  return [
    '# A process restarting (connection refused, /health 503 SHUTTING_DOWN) or killed: try the next',
    '# one. POSTs are retried only when they were not sent (never non_idempotent: a prompt that may',
    '# have been queued is not queued twice).',
    'proxy_next_upstream error timeout http_502 http_503 http_504;',
    'proxy_next_upstream_tries 3;',
    'proxy_next_upstream_timeout 30s;',
    '',
  ];
}

/** The nginx configuration (http context: an `upstream`, a `map` and the `server` blocks). */
export function renderNginxConfig(input: NginxConfigOptions): string {
  const o = nginxConfigOptions.parse(input);
  const tls = Boolean(o.cert && o.key);
  const httpsPort = tls ? portOf(o.listen ?? '443') : null;
  const redirect = tls && o.redirectListen !== null ? (o.redirectListen ?? '80') : null;
  const proxyPass = 'proxy_pass http://comfy_multi;';
  const out: string[] = [
    `# comfy-multi behind nginx${o.version ? ` (generated by comfy-multi ${o.version} nginx-config)` : ''}.`,
    '# Put this file in /etc/nginx/conf.d/ (it belongs in the http block), then: nginx -t && systemctl reload nginx',
    '# Start the control plane with:',
    `#   HOST=127.0.0.1 TRUST_PROXY=true PUBLIC_URL=${tls ? 'https' : 'http'}://<your host name>`,
    '# and without TLS_CERT/TLS_KEY (nginx speaks TLS; the control plane plain HTTP on loopback).',
    '',
    ...upstreamBlock(o.upstream),
    '# WebSocket upgrades (/<user>/ws, the dashboard, /worker/v1/ws); other requests keep the',
    '# upstream connection alive.',
    'map $http_upgrade $comfy_multi_connection {',
    '    default upgrade;',
    "    ''      '';",
    '}',
    '',
  ];
  if (redirect !== null) {
    const port = httpsPort === '443' ? '' : `:${httpsPort}`;
    out.push(
      'server {',
      ...indent([
        ...listenLines(o.redirectListen ?? undefined, 80, false),
        `server_name ${o.serverName};`,
        '# Everything to https, path and query unchanged.',
        `return 301 https://$host${port}$request_uri;`,
      ]),
      '}',
      '',
    );
  }
  const body: string[] = [...listenLines(o.listen, tls ? 443 : 80, tls), `server_name ${o.serverName};`, ''];
  if (tls) {
    body.push(
      `ssl_certificate ${o.cert};`,
      `ssl_certificate_key ${o.key};`,
      'ssl_protocols TLSv1.2 TLSv1.3;',
      'ssl_session_cache shared:comfy_multi_tls:10m;',
      'ssl_session_timeout 1d;',
      '',
    );
  }
  body.push(
    '# ComfyUI asks for /api/userdata/workflows%2Fname.json: the URI goes upstream exactly as sent',
    '# (proxy_pass without a URI part), and double slashes stay as they are.',
    'merge_slashes off;',
    '',
    "# Just above the server's own limits (UPLOAD_LIMIT / BODY_LIMIT / LORA_UPLOAD_LIMIT), so its JSON 413 is what",
    '# clients see; uploads and downloads stream instead of being spooled to disk.',
    `client_max_body_size ${nginxSize(o.bodyLimit)};`,
    'proxy_request_buffering off;',
    'proxy_buffering off;',
    '',
    '# Long-lived WebSockets, large videos, slow uploads.',
    'proxy_http_version 1.1;',
    // Several processes: a machine that died without refusing connections costs its share of
    // requests this long before they move on to the next process.
    `proxy_connect_timeout ${o.upstream.length > 1 ? '3s' : '10s'};`,
    'proxy_read_timeout 3600s;',
    'proxy_send_timeout 3600s;',
    'send_timeout 3600s;',
    'client_body_timeout 300s;',
    '',
    ...(o.upstream.length > 1 ? nextUpstreamLines() : []),
    '# TRUST_PROXY=true makes the control plane believe these. X-Forwarded-For is set, not appended',
    '# to: nginx is the edge, so a client cannot choose the address the login throttle counts.',
    'proxy_set_header Host $http_host;',
    'proxy_set_header X-Forwarded-Host $http_host;',
    'proxy_set_header X-Forwarded-Proto $scheme;',
    'proxy_set_header X-Forwarded-For $remote_addr;',
    'proxy_set_header Upgrade $http_upgrade;',
    'proxy_set_header Connection $comfy_multi_connection;',
    '',
    'location / {',
    `    ${proxyPass}`,
    '}',
    '',
    '# GPU workers upload outputs here (OUTPUT_UPLOAD_LIMIT).',
    'location /worker/v1/ {',
    `    client_max_body_size ${nginxSize(o.workerUploadLimit)};`,
    `    ${proxyPass}`,
    '}',
  );
  out.push('server {', ...indent(body), '}', '');
  return out.join('\n');
}
