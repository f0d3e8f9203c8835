/**
 * deploy/gpu/install.sh, up to the point that needs a GPU: run with COMFYUI_STANDIN=1 (no apt, no
 * torch, no ComfyUI clone: the ComfyUI stand-in of this checkout) and NO_START=1 (services written,
 * not started) into a temporary prefix, with a models list served by a local HTTP server that
 * honours Range requests. Checks the installed agent, the rendered units (systemd-analyze verify),
 * the model's sha256, that a download cut mid-way resumes (within a run and across runs), that a
 * second run does nothing, and that a recreated instance (state gone, models volume kept) keeps its
 * models without downloading them again.
 *
 * Needs root (the script refuses otherwise) and a built checkout (`npm run build`, as `npm test` does).
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Processes, waitFor } from '../support/processes.js';
import { freePort } from '../support/redis-server.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const SCRIPT = join(ROOT, 'deploy/gpu/install.sh');
const MODEL = randomBytes(3 * 1024 * 1024 + 123);
const MODEL_SHA = createHash('sha256').update(MODEL).digest('hex');
const REL = 'checkpoints/workshop-test.safetensors';

function whySkip(): string | null {
  if (process.platform !== 'linux') return 'needs linux';
  if (process.getuid?.() !== 0) return 'needs root (install.sh installs services)';
  return null;
}
const skip = whySkip();

interface Req {
  url: string;
  range: string | undefined;
}
const requests: Req[] = [];
/** Cut the next response for the model after this many bytes (a dropped connection). */
let cutNextAfter: number | null = null;
let server: Server;
let base: string;
let work: string;
let dirs: { prefix: string; etc: string; systemd: string; models: string; list: string };

function serve(): Promise<void> {
  server = createServer((req, res) => {
    requests.push({ url: req.url ?? '', range: req.headers.range });
    if (req.url !== '/model.safetensors') {
      res.writeHead(404).end();
      return;
    }
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    const start = m ? Number(m[1]) : 0;
    const body = MODEL.subarray(start);
    res.writeHead(m ? 206 : 200, {
      'content-length': String(body.length),
      'accept-ranges': 'bytes',
      ...(m ? { 'content-range': `bytes ${start}-${MODEL.length - 1}/${MODEL.length}` } : {}),
    });
    if (cutNextAfter !== null) {
      const n = cutNextAfter;
      cutNextAfter = null;
      res.write(body.subarray(0, n), () => setTimeout(() => res.socket?.destroy(), 50));
      return;
    }
    res.end(body);
  });
  return new Promise((r) => server.listen(0, '127.0.0.1', () => r()));
}

interface Run {
  code: number | null;
  out: string;
}
function install(
  extraEnv: Record<string, string> = {},
  list = `file://${dirs.list}`,
  serverUrl = 'http://127.0.0.1:9',
): Promise<Run> {
  const env = {
    ...process.env,
    COMFYUI_STANDIN: '1',
    NO_START: '1',
    PREFIX: dirs.prefix,
    ETC_DIR: dirs.etc,
    SYSTEMD_DIR: dirs.systemd,
    SERVICE_USER: 'root',
    COMFY_MULTI_TOKEN: 'test-worker-token-0123456789',
    ...extraEnv,
  };
  const args = [
    '--server',
    serverUrl,
    '--name',
    'gpu-test',
    '--agent-src',
    ROOT,
    '--models',
    list,
    '--models-dir',
    dirs.models,
  ];
  return new Promise((done) => {
    const child = spawn('bash', [SCRIPT, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (out += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 240_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      done({ code, out });
    });
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const modelPath = () => join(dirs.models, REL);
const sha = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');
const modelRequests = () => requests.filter((r) => r.url === '/model.safetensors');

describe.skipIf(skip !== null)(`deploy/gpu/install.sh${skip ? ` (skipped: ${skip})` : ''}`, () => {
  beforeAll(async () => {
    await serve();
    const address = server.address();
    base = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
    work = mkdtempSync(join(tmpdir(), 'cm-gpu-install-'));
    dirs = {
      prefix: join(work, 'opt/comfy-multi-gpu'),
      etc: join(work, 'etc/comfy-multi'),
      systemd: join(work, 'etc/systemd/system'),
      models: join(work, 'persistent/models'),
      list: join(work, 'models.txt'),
    };
    writeFileSync(dirs.list, `# a workshop's models\n${REL} ${MODEL_SHA} ${base}/model.safetensors\n`);
  });

  afterAll(async () => {
    await new Promise((r) => server?.close(r));
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('installs the agent, the services and the models; a cut download resumes', async () => {
    expect(existsSync(join(ROOT, 'dist/cli/index.js')), 'build the checkout first: npm run build').toBe(true);
    cutNextAfter = 1024 * 1024;
    const run = await install();
    expect(run.code, run.out).toBe(0);
    // The model arrived complete although the first response was cut: curl resumed with a Range.
    expect(sha(modelPath())).toBe(MODEL_SHA);
    expect(existsSync(`${modelPath()}.part`)).toBe(false);
    expect(modelRequests().map((r) => r.range)).toEqual([undefined, `bytes=${1024 * 1024}-`]);
    // The agent runs from the prefix with its production dependencies only.
    const agent = join(dirs.prefix, 'comfy-multi');
    expect(existsSync(join(agent, 'dist/cli/index.js'))).toBe(true);
    expect(existsSync(join(agent, 'node_modules/better-sqlite3'))).toBe(true);
    expect(existsSync(join(agent, 'node_modules/vitest'))).toBe(false);
    // ComfyUI reads models from the persistent folder.
    expect(readFileSync(join(dirs.prefix, 'ComfyUI/extra_model_paths.yaml'), 'utf8')).toContain(
      `base_path: ${dirs.models}\n`,
    );
    // The worker's settings, token included, are readable by root only.
    const env = join(dirs.etc, 'worker.env');
    expect(statSync(env).mode & 0o777).toBe(0o600);
    expect(readFileSync(env, 'utf8')).toContain('WORKER_NAME=gpu-test\n');
    // The agent reads outputs from ComfyUI's output folder, which exists before ComfyUI first runs.
    const outputDir = /^COMFYUI_OUTPUT_DIR=(.+)$/m.exec(readFileSync(env, 'utf8'))?.[1];
    expect(outputDir).toBeDefined();
    expect(statSync(outputDir!).isDirectory()).toBe(true);
    // Both units are valid for systemd (commands, users and folders exist).
    for (const unit of ['comfyui.service', 'comfy-multi-worker.service']) {
      const text = readFileSync(join(dirs.systemd, unit), 'utf8');
      expect(text).toMatch(/^ExecStart=\//m);
      const verify = await verifyUnit(join(dirs.systemd, unit));
      expect(verify.code, `${unit}: ${verify.out}`).toBe(0);
    }
  }, 300_000);

  it('a second run does nothing', async () => {
    const before = modelRequests().length;
    const run = await install();
    expect(run.code, run.out).toBe(0);
    expect(run.out).toContain('nothing to do');
    expect(run.out).not.toContain('step:');
    expect(modelRequests().length).toBe(before);
  }, 120_000);

  it('an interrupted download resumes on the next run', async () => {
    // As if the previous run was killed mid-download: a partial file and no marker.
    rmSync(modelPath());
    rmSync(join(dirs.prefix, 'state/models.done'));
    writeFileSync(`${modelPath()}.part`, MODEL.subarray(0, 777_777));
    const before = modelRequests().length;
    const run = await install();
    expect(run.code, run.out).toBe(0);
    expect(run.out).toContain('resuming at 777777 bytes');
    expect(
      modelRequests()
        .slice(before)
        .map((r) => r.range),
    ).toEqual(['bytes=777777-']);
    expect(sha(modelPath())).toBe(MODEL_SHA);
  }, 120_000);

  it('a restarted instance that lost /etc (state kept) writes its settings again', async () => {
    rmSync(dirs.etc, { recursive: true, force: true });
    const run = await install();
    expect(run.code, run.out).toBe(0);
    expect(run.out).toContain('step: services');
    expect(run.out).not.toContain('step: agent');
    expect(readFileSync(join(dirs.etc, 'worker.env'), 'utf8')).toContain('WORKER_NAME=gpu-test\n');
  }, 120_000);

  it('a recreated instance (state gone, models volume kept) keeps its models', async () => {
    rmSync(dirs.prefix, { recursive: true, force: true });
    const before = modelRequests().length;
    const run = await install();
    expect(run.code, run.out).toBe(0);
    expect(run.out).toContain(`model present and verified: ${REL}`);
    expect(modelRequests().length).toBe(before);
    expect(existsSync(join(dirs.prefix, 'comfy-multi/dist/cli/index.js'))).toBe(true);
  }, 300_000);

  it('without systemd, starts the supervisor: the stand-in and the agent run a job for a control plane', async () => {
    const procs = new Processes();
    const dataDir = join(work, 'control-plane');
    const [port, comfyPort] = await Promise.all([freePort(), freePort()]);
    const serverUrl = `http://127.0.0.1:${port}`;
    const token = 'gpu-install-test-token-0123456789';
    const env = { DATA_DIR: dataDir, ADMIN_PASSWORD: 'gpu-install-admin-pw', LOG_LEVEL: 'warn' };
    const pidFile = join(dirs.prefix, 'supervisor.pid');
    try {
      procs.run('serve', ['src/cli/index.ts', 'serve'], {
        ...env,
        HOST: '127.0.0.1',
        PORT: String(port),
        WORKER_TOKENS: `gpu-install:${token}`,
      });
      await waitFor(async () => (await fetch(`${serverUrl}/health`)).ok, 30_000, 'the control plane');
      await procs.run('users-add', ['src/cli/index.ts', 'users', 'add', 'alice'], env).exited;
      const run = await install(
        { NO_START: '0', COMFY_MULTI_TOKEN: token, COMFYUI_PORT: String(comfyPort) },
        `file://${dirs.list}`,
        serverUrl,
      );
      expect(run.code, run.out).toBe(0);
      expect(run.out).toContain('no systemd here');
      const check = procs.run(
        'job-check',
        ['test/images/job-check.ts', serverUrl, env.ADMIN_PASSWORD, 'alice', 'gpu-test'],
        {},
      );
      const code = await check.exited;
      expect(
        code,
        `${check.log.join('')}\n${readFileSync(join(dirs.prefix, 'supervisor.log'), 'utf8').slice(-3000)}`,
      ).toBe(0);
      // A graceful stop: the supervisor stops the agent, then the stand-in, and exits.
      const pid = Number(readFileSync(pidFile, 'utf8'));
      process.kill(pid, 'SIGTERM');
      await waitFor(() => !alive(pid), 60_000, 'the supervisor to exit');
      expect(readFileSync(join(dirs.prefix, 'supervisor.log'), 'utf8')).toContain('supervisor: stopped');
    } finally {
      if (existsSync(pidFile)) {
        const pid = Number(readFileSync(pidFile, 'utf8'));
        if (alive(pid)) process.kill(-pid, 'SIGKILL');
      }
      await procs.killAll();
    }
  }, 300_000);

  it('refuses a models list entry without a sha256, saying which', async () => {
    const bad = join(work, 'bad.txt');
    writeFileSync(bad, `loras/x.safetensors ${base}/model.safetensors\n`);
    const run = await install({}, bad);
    expect(run.code).toBe(1);
    expect(run.out).toContain('models list: loras/x.safetensors needs a sha256');
  }, 120_000);
});

/** `systemd-analyze verify` when systemd is installed; otherwise nothing to check. */
function verifyUnit(path: string): Promise<Run> {
  return new Promise((done) => {
    const child = spawn('systemd-analyze', ['verify', '--man=no', path], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (out += c.toString()));
    child.once('error', () => done({ code: 0, out: 'systemd-analyze not installed' }));
    child.once('exit', (code) => done({ code, out: out.trim() ? out : '' }));
  });
}
