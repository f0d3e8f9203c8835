/**
 * `comfy-multi doctor`: the checks an instructor runs the evening before a workshop. Each check is
 * one function that answers one line: ok, a warning (the room can work, but something will bite),
 * a failure (something participants will notice), or skipped (it could not be checked, and why).
 * Every warning and failure says what to do about it.
 *
 * Checks read the same configuration the server reads, open the store and file store directly (as
 * the `users` commands do, safe while the server runs), and ask the running server for what only
 * it knows (connected workers, the frontend it serves).
 */
import { X509Certificate } from 'node:crypto';
import { readFile, statfs } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import type { Config } from '../config/schema.js';
import type { FileStore } from '../files/file-store.js';
import type { JobStore } from '../store/types.js';
import { loadEnv } from '../dispatch/env-snapshots.js';
import { missingModels, modelsOfWorkflow } from '../comfy/workflow-models.js';
import { workflowModelNeeds } from '../comfy/workflow-needs.js';
import type { ObjectInfo } from '../comfy/protocol.js';
import type { WorkshopTemplates } from '../templates/workshop-templates.js';
import type { TemplateSource } from '../gateway/templates.js';
import { isLocalOnly } from '../config/public-url.js';
import { EXPIRY_WARNING_DAYS } from '../http/tls.js';

export type CheckStatus = 'ok' | 'warn' | 'fail' | 'skip';

export interface CheckResult {
  name: string;
  status: CheckStatus;
  /** One sentence: what was found. */
  message: string;
  /** One sentence: what to do (warnings and failures). */
  fix?: string;
}

const GB = 1024 ** 3;
/** Below this much free space in DATA_DIR a room's outputs (video) may not fit: a warning. */
export const DISK_WARN_BYTES = 10 * GB;
/** Below this much, writes will fail during the day: a failure. */
export const DISK_FAIL_BYTES = 1 * GB;
/** Clock skew beyond this is a warning; S3 and R2 refuse signed requests beyond 15 minutes. */
export const SKEW_WARN_MS = 30_000;
export const SKEW_FAIL_MS = 5 * 60_000;

const ok = (name: string, message: string): CheckResult => ({ name, status: 'ok', message });
const warn = (name: string, message: string, fix: string): CheckResult => ({
  name,
  status: 'warn',
  message,
  fix,
});
const fail = (name: string, message: string, fix: string): CheckResult => ({
  name,
  status: 'fail',
  message,
  fix,
});
const skip = (name: string, message: string): CheckResult => ({ name, status: 'skip', message });

const errorText = (err: unknown) => (err instanceof Error ? err.message : String(err));

function formatBytes(n: number): string {
  return n >= GB ? `${(n / GB).toFixed(1)} GB` : `${Math.round(n / 1024 ** 2)} MB`;
}

export async function checkStore(store: JobStore, config: Config): Promise<CheckResult> {
  const t0 = performance.now();
  try {
    await store.ping();
    const counts = await store.countByStatus();
    const ms = Math.round(performance.now() - t0);
    return ok(
      'store',
      `${config.STORE} answers in ${ms} ms (${counts.pending} waiting, ${counts.running} running).`,
    );
  } catch (err) {
    return fail(
      'store',
      `${config.STORE} cannot be used: ${errorText(err)}.`,
      config.STORE === 'redis' ? 'Start Redis or fix REDIS_URL.' : 'Check that DATA_DIR is writable.',
    );
  }
}

export async function checkInstructor(store: JobStore): Promise<CheckResult> {
  const accounts = await store.listAccounts();
  const instructors = accounts.filter((a) => a.role === 'instructor').map((a) => a.name);
  const participants = accounts.length - instructors.length;
  if (instructors.length === 0) {
    return fail(
      'accounts',
      `no instructor account (${participants} participants).`,
      'Start the server once (it creates `admin`), or run `comfy-multi users add admin --role instructor`.',
    );
  }
  if (participants === 0) {
    return warn(
      'accounts',
      `instructors ${instructors.join(', ')}, but no participant accounts yet.`,
      'Create them: `comfy-multi users init --count 20`.',
    );
  }
  return ok('accounts', `${participants} participants; instructors ${instructors.join(', ')}.`);
}

/** Writes, reads back and deletes a small object where user files go. */
export async function checkFileStore(files: FileStore): Promise<CheckResult> {
  const key = `.doctor/probe-${randomBytes(6).toString('hex')}`;
  const body = Buffer.from(`comfy-multi doctor ${new Date().toISOString()}`);
  try {
    await files.write(key, body);
    const back = await files.stat(key);
    if (!back || back.size !== body.length) throw new Error('the probe file did not read back');
    return ok('files', `${files.backend} file store: write, read and delete work.`);
  } catch (err) {
    return fail(
      'files',
      `${files.backend} file store cannot be written: ${errorText(err)}.`,
      files.backend === 's3'
        ? 'Check S3_ENDPOINT, S3_BUCKET and the access keys (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY).'
        : 'Check that DATA_DIR/files exists and belongs to the user the server runs as.',
    );
  } finally {
    await files.delete(key).catch(() => false);
  }
}

export async function checkDisk(dataDir: string): Promise<CheckResult> {
  let free: number;
  try {
    const s = await statfs(dataDir);
    free = s.bavail * s.bsize;
  } catch (err) {
    return fail('disk', `cannot read the free space of ${dataDir}: ${errorText(err)}.`, 'Create DATA_DIR.');
  }
  const what = `${formatBytes(free)} free in ${dataDir}`;
  if (free < DISK_FAIL_BYTES) {
    return fail('disk', `only ${what}.`, 'Free space or move DATA_DIR to a larger disk before the workshop.');
  }
  if (free < DISK_WARN_BYTES) {
    return warn('disk', `${what}: a room making video can fill it in a day.`, 'Free space or move DATA_DIR.');
  }
  return ok('disk', `${what}.`);
}

/** The certificate the server serves: readable, PEM, not expired, not expiring within 14 days. */
export async function checkCertificate(certPath: string | undefined, now = Date.now()): Promise<CheckResult> {
  if (!certPath) return skip('certificate', 'TLS_CERT is not set (plain HTTP, or HTTPS ends at a proxy).');
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(await readFile(certPath));
  } catch (err) {
    return fail(
      'certificate',
      `cannot read ${certPath} as a PEM certificate: ${errorText(err)}.`,
      'Point TLS_CERT at fullchain.pem.',
    );
  }
  const end = Date.parse(cert.validTo);
  const days = Math.floor((end - now) / 86_400_000);
  const subject = cert.subjectAltName ?? cert.subject;
  if (end <= now) {
    return fail(
      'certificate',
      `${certPath} (${subject}) expired on ${cert.validTo}.`,
      'Renew the certificate, then `systemctl reload comfy-multi` (SIGHUP).',
    );
  }
  if (days < EXPIRY_WARNING_DAYS) {
    return warn(
      'certificate',
      `${certPath} (${subject}) expires in ${days} days (${cert.validTo}).`,
      'Renew it before the workshop; the server reloads it on SIGHUP.',
    );
  }
  return ok('certificate', `${subject}, valid for ${days} more days.`);
}

/** Compares this machine's clock with the `Date` header of a server that matters (S3, the control plane). */
export async function checkClock(
  targets: { name: string; url: string }[],
  now = () => Date.now(),
): Promise<CheckResult> {
  if (targets.length === 0)
    return skip('clock', 'no remote server to compare the clock with (no S3, no remote --server).');
  const skews: string[] = [];
  let worst = 0;
  for (const t of targets) {
    try {
      const before = now();
      const res = await fetch(t.url, { method: 'HEAD', signal: AbortSignal.timeout(5000) });
      const after = now();
      const date = res.headers.get('date');
      if (!date) continue;
      // The Date header has one-second resolution: compare with the middle of the round trip.
      const skew = Date.parse(date) + 500 - (before + after) / 2;
      skews.push(`${t.name} ${skew >= 0 ? '+' : ''}${(skew / 1000).toFixed(1)} s`);
      if (Math.abs(skew) > Math.abs(worst)) worst = skew;
    } catch {
      /* unreachable targets are other checks' business */
    }
  }
  if (skews.length === 0) return skip('clock', 'no server answered with a Date header.');
  const list = skews.join(', ');
  if (Math.abs(worst) > SKEW_FAIL_MS)
    return fail('clock', `clock differs: ${list}.`, 'Enable time sync: `timedatectl set-ntp true`.');
  if (Math.abs(worst) > SKEW_WARN_MS)
    return warn('clock', `clock differs: ${list}.`, 'Enable time sync: `timedatectl set-ntp true`.');
  return ok('clock', `in step (${list}).`);
}

/** PUBLIC_URL is what login links and cards use: it must be set, not localhost, and reachable from here. */
export async function checkPublicUrl(config: Config): Promise<CheckResult> {
  if (!config.PUBLIC_URL) {
    return warn(
      'public-url',
      `PUBLIC_URL is not set: login links use http://localhost:${config.PORT}, which participants cannot open.`,
      'Set PUBLIC_URL to the address participants type, e.g. https://workshop.example.com.',
    );
  }
  const url = new URL(config.PUBLIC_URL);
  if (isLocalOnly(config.PUBLIC_URL)) {
    return warn(
      'public-url',
      `PUBLIC_URL is ${config.PUBLIC_URL}: participants' machines cannot open it.`,
      "Set it to the server's public name or address.",
    );
  }
  try {
    const res = await fetch(new URL('/health', url), { signal: AbortSignal.timeout(5000) });
    if (!res.ok) {
      return fail(
        'public-url',
        `${config.PUBLIC_URL}/health answered ${res.status}.`,
        'Check the proxy in front of the server (`comfy-multi nginx-config`).',
      );
    }
    return ok('public-url', `${config.PUBLIC_URL} reaches this control plane.`);
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    return fail(
      'public-url',
      `${config.PUBLIC_URL} is not reachable from this server (${cause?.code ?? cause?.message ?? errorText(err)}).`,
      'Check DNS, the firewall (ports 80/443) and that the server is running.',
    );
  }
}

/** What the running server says about itself (`GET /api/v1/status` and `/api/v1/workers`). */
export interface ServerView {
  status: {
    healthy: boolean;
    problems: string[];
    workers: { total: number; usable: number };
    frontend: { source: string; label: string | null } | null;
  };
  workers: { id: string; name: string; connected: boolean; envHash: string | null }[];
}

export function checkWorkers(view: ServerView | null): CheckResult {
  if (!view) return skip('workers', 'the running server could not be asked (see `server`).');
  const connected = view.workers.filter((w) => w.connected);
  if (connected.length === 0) {
    return warn(
      'workers',
      'no GPU worker is connected: jobs will wait.',
      'Start the GPU hosts (docs/gpu-hosts.md) or `comfy-multi worker` beside each ComfyUI.',
    );
  }
  const names = connected.map((w) => w.name).join(', ');
  if (view.status.workers.usable === 0) {
    return warn(
      'workers',
      `${connected.length} connected (${names}) but none usable.`,
      "Look at the dashboard's Workers panel.",
    );
  }
  return ok(
    'workers',
    `${view.status.workers.usable} of ${connected.length} connected workers usable (${names}).`,
  );
}

export function checkFrontend(view: ServerView | null, config: Config): CheckResult {
  if (!view) {
    return config.FRONTEND_DIR
      ? ok('frontend', `FRONTEND_DIR=${config.FRONTEND_DIR}.`)
      : skip('frontend', 'the running server could not be asked (see `server`).');
  }
  const fe = view.status.frontend;
  if (!fe || fe.source === 'none') {
    return warn(
      'frontend',
      'no ComfyUI frontend yet: participants see a waiting page.',
      "Connect a worker (it copies its ComfyUI's frontend) or set FRONTEND_DIR.",
    );
  }
  return ok('frontend', `${fe.source}${fe.label ? ` (${fe.label})` : ''}.`);
}

/** Every template's model files on every connected worker, from the workers' env snapshots. */
export async function checkTemplateModels(
  templates: TemplateSource,
  view: ServerView | null,
  store: JobStore,
  /** The dashboard's workshop templates (kept in the store), checked first. */
  workshop?: WorkshopTemplates,
): Promise<CheckResult> {
  const files = await templates.list();
  const wanted: { template: string; workflow: unknown; models: string[] }[] = [];
  const broken: string[] = [];
  for (const t of (await workshop?.list())?.templates ?? []) {
    const text = await workshop!.workflow(t.id);
    if (text === null) continue;
    try {
      const workflow: unknown = JSON.parse(text);
      wanted.push({
        template: `workshop template “${t.title}”`,
        workflow,
        models: modelsOfWorkflow(workflow),
      });
    } catch {
      broken.push(`workshop template “${t.title}” is not valid JSON`);
    }
  }
  for (const t of files) {
    const body = await templates.read(t.path);
    if (!body) continue;
    try {
      const workflow: unknown = JSON.parse(body.toString('utf8'));
      wanted.push({ template: t.path, workflow, models: modelsOfWorkflow(workflow) });
    } catch {
      broken.push(`${t.path} is not valid JSON`);
    }
  }
  const def = await templates.defaultWorkflow();
  if (def) {
    try {
      const workflow: unknown = JSON.parse(def.body.toString('utf8'));
      wanted.push({ template: def.name, workflow, models: modelsOfWorkflow(workflow) });
    } catch {
      /* an unreadable default workflow is the gateway's problem to report */
    }
  }
  if (wanted.length === 0 && broken.length === 0)
    return skip('models', 'no templates (dashboard, TEMPLATES_DIR, DEFAULT_WORKFLOW) to check.');
  // A template that is not JSON fails with or without workers: the instructor put it there.
  if (broken.length > 0 && (!view || !view.workers.some((w) => w.connected && w.envHash)))
    return fail(
      'models',
      `${broken.join('; ')}.`,
      'Fix or remove the file: a template is a workflow saved by ComfyUI.',
    );
  const needed = wanted.reduce((n, w) => n + w.models.length, 0);
  if (!view)
    return skip(
      'models',
      `${wanted.length} templates need ${needed} model files; no server to ask which workers hold them.`,
    );
  const workers = view.workers.filter((w) => w.connected && w.envHash);
  if (workers.length === 0)
    return skip(
      'models',
      `${wanted.length} templates need ${needed} model files; no worker connected to check.`,
    );
  const gaps: string[] = [...broken];
  const optionalGaps: string[] = [];
  for (const w of workers) {
    const env = await loadEnv(store, w.envHash!);
    if (!env) continue;
    for (const t of wanted) {
      const needs = workflowModelNeeds(t.workflow, env.objectInfo as ObjectInfo);
      if (needs.error) gaps.push(`${w.name} cannot run ${t.template}: ${needs.error}`);
      const missing = missingModels(needs.needed, env.models);
      if (missing.length > 0) gaps.push(`${w.name} lacks ${missing.join(', ')} (${t.template})`);
      const optional = missingModels(needs.optional, env.models);
      if (optional.length > 0)
        optionalGaps.push(
          `${w.name} lacks ${optional.join(', ')} (${t.template}, muted or bypassed nodes only)`,
        );
    }
  }
  const fix = "Copy the files into the worker's ComfyUI models folders (deploy/gpu/install.sh --models).";
  if (gaps.length > 0) return fail('models', `${[...gaps, ...optionalGaps].join('; ')}.`, fix);
  if (optionalGaps.length > 0) return warn('models', `${optionalGaps.join('; ')}.`, fix);
  return ok('models', `every worker holds the ${needed} model files of ${wanted.length} templates.`);
}
