import { execFileSync } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { runDoctor } from '../cli/commands/doctor.js';
import { saveEnv } from '../dispatch/env-snapshots.js';
import { TemplateSource } from '../gateway/templates.js';
import { startHarness, type Harness } from '../../test/support/app-harness.js';
import { COMFY_FIXTURES, WORKFLOW_FIXTURES } from '../../test/support/fixtures.js';
import { checkCertificate, checkTemplateModels, type ServerView } from './checks.js';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'cm-doctor-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function doctor(env: Record<string, string>): Promise<{ code: number; out: string }> {
  let out = '';
  const code = await runDoctor({}, { LOG_LEVEL: 'silent', ...env }, { out: (s) => (out += s) });
  return { code, out };
}

const line = (out: string, name: string) => out.split('\n').find((l) => l.slice(6).startsWith(name)) ?? '';

describe('comfy-multi doctor', () => {
  let h: Harness;

  it('passes a ready room, and warns when no GPU worker is connected', async () => {
    h = await startHarness();
    cleanups.push(() => h.close());
    await h.addUser('alice');
    await h.services.accounts.create('teach', 'instructor', 'teach-password-123');
    await h.app.listen({ port: 0, host: '127.0.0.1' });
    const port = (h.app.server.address() as { port: number }).port;
    const { code, out } = await doctor({
      DATA_DIR: h.dataDir,
      PUBLIC_URL: `http://127.0.0.1:${port}`,
      COMFY_MULTI_USER: 'teach',
      COMFY_MULTI_PASSWORD: 'teach-password-123',
    });
    expect(line(out, 'store')).toMatch(/^ok/);
    expect(line(out, 'accounts')).toMatch(/^ok .*1 participants/);
    expect(line(out, 'files')).toMatch(/^ok .*local file store/);
    expect(line(out, 'server')).toMatch(/^ok|^WARN/);
    // 127.0.0.1 cannot be opened by participants' laptops: a warning with its fix.
    expect(line(out, 'public-url')).toMatch(/^WARN/);
    expect(out).toContain('Set it to the server');
    expect(line(out, 'workers')).toMatch(/^WARN .*no GPU worker/);
    expect(code).toBe(0);
  });

  it('fails when no server answers and no instructor account exists', async () => {
    const dir = await tempDir();
    const { code, out } = await doctor({ DATA_DIR: dir, PORT: '1' });
    expect(line(out, 'accounts')).toMatch(/^FAIL .*no instructor/);
    expect(out).toContain('users add admin --role instructor');
    expect(line(out, 'public-url')).toMatch(/^WARN .*PUBLIC_URL is not set/);
    expect(line(out, 'server')).toMatch(/^FAIL .*no control plane answers/);
    expect(code).toBe(1);
  });

  it('exits 2 with the bad setting named when the configuration is invalid', async () => {
    const { code, out } = await doctor({ STORE: 'mongodb' });
    expect(code).toBe(2);
    expect(line(out, 'config')).toMatch(/^FAIL .*STORE/);
  });
});

describe('certificate check', () => {
  it('passes a valid certificate, warns within 14 days of expiry, fails an expired one', async () => {
    const dir = await tempDir();
    const cert = join(dir, 'fullchain.pem');
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-nodes',
        '-days',
        '30',
        '-subj',
        '/CN=workshop.test',
        '-keyout',
        join(dir, 'privkey.pem'),
        '-out',
        cert,
      ],
      { stdio: 'ignore' },
    );
    const day = 86_400_000;
    expect((await checkCertificate(cert)).status).toBe('ok');
    const soon = await checkCertificate(cert, Date.now() + 20 * day);
    expect(soon.status).toBe('warn');
    expect(soon.message).toMatch(/expires in 9 days|expires in 10 days/);
    const expired = await checkCertificate(cert, Date.now() + 31 * day);
    expect(expired.status).toBe('fail');
    expect(expired.fix).toMatch(/Renew/);
    expect((await checkCertificate(join(dir, 'privkey.pem'))).status).toBe('fail');
    expect((await checkCertificate(undefined)).status).toBe('skip');
  });
});

describe('template models check', () => {
  it("names the files of a template that a worker's ComfyUI lacks", async () => {
    const h = await startHarness();
    cleanups.push(() => h.close());
    const templates = join(h.dataDir, 'templates');
    await mkdir(templates);
    await copyFile(join(WORKFLOW_FIXTURES, 'ltx2_text_to_video.json'), join(templates, 'ltx2.json'));
    const hash = 'a'.repeat(64);
    await saveEnv(h.services.store, hash, {
      comfyuiVersion: '0.3.64',
      objectInfo: {},
      embeddings: [],
      models: {
        checkpoints: ['ltx-2-19b-dev-fp8.safetensors'],
        latent_upscale_models: ['ltx-2-spatial-upscaler-x2-1.0.safetensors'],
        loras: ['ltx-2-19b-distilled-lora-384.safetensors'],
        text_encoders: ['gemma_3_12B_it_fp4_mixed.safetensors'],
      },
      extensions: [],
      systemStats: {},
    });
    const view: ServerView = {
      status: { healthy: true, problems: [], workers: { total: 1, usable: 1 }, frontend: null },
      workers: [{ id: 'w1', name: 'gpu1', connected: true, envHash: hash }],
    };
    const r = await checkTemplateModels(new TemplateSource(templates, null), view, h.services.store);
    expect(r.status).toBe('fail');
    expect(r.message).toBe(
      'gpu1 lacks loras/ltx-2-19b-lora-camera-control-dolly-left.safetensors (ltx2.json).',
    );
  });

  it("checks the dashboard's workshop templates too", async () => {
    const h = await startHarness();
    cleanups.push(() => h.close());
    const hash = 'c'.repeat(64);
    await saveEnv(h.services.store, hash, {
      comfyuiVersion: '0.3.64',
      objectInfo: {},
      embeddings: [],
      models: { checkpoints: ['ltx-2-19b-dev-fp8.safetensors'] },
      extensions: [],
      systemStats: {},
    });
    const view: ServerView = {
      status: { healthy: true, problems: [], workers: { total: 1, usable: 1 }, frontend: null },
      workers: [{ id: 'w1', name: 'gpu1', connected: true, envHash: hash }],
    };
    const workflow = await readFile(join(WORKFLOW_FIXTURES, 'ltx2_text_to_video.json'), 'utf8');
    await h.services.workshopTemplates.add({ title: 'LTX-2 video', description: '', workflow }, 'teach');
    const r = await checkTemplateModels(
      new TemplateSource(null, null),
      view,
      h.services.store,
      h.services.workshopTemplates,
    );
    expect(r.status).toBe('fail');
    expect(r.message).toContain('gpu1 lacks ');
    expect(r.message).toContain('(workshop template “LTX-2 video”)');
    expect(r.message).not.toContain('ltx-2-19b-dev-fp8.safetensors,');
  });

  /** The LTX-2 template on one worker with object_info (0.3.64 + the newer nodes it uses). */
  async function ltxOnWorker(models: Record<string, string[]>, extraTemplate?: [string, string]) {
    const h = await startHarness();
    cleanups.push(() => h.close());
    const templates = join(h.dataDir, 'templates');
    await mkdir(templates);
    await copyFile(join(WORKFLOW_FIXTURES, 'ltx2_text_to_video.json'), join(templates, 'ltx2.json'));
    if (extraTemplate) await writeFile(join(templates, extraTemplate[0]), extraTemplate[1]);
    const objectInfo = {
      ...JSON.parse(await readFile(join(COMFY_FIXTURES, 'object_info.json'), 'utf8')),
      ...JSON.parse(
        await readFile(
          new URL('../../test/fixtures/workflow-convert/object_info-newer-nodes.json', import.meta.url),
          'utf8',
        ),
      ),
    };
    const hash = 'b'.repeat(64);
    await saveEnv(h.services.store, hash, {
      comfyuiVersion: '0.3.64',
      objectInfo,
      embeddings: [],
      models,
      extensions: [],
      systemStats: {},
    });
    const view: ServerView = {
      status: { healthy: true, problems: [], workers: { total: 1, usable: 1 }, frontend: null },
      workers: [{ id: 'w1', name: 'gpu1', connected: true, envHash: hash }],
    };
    return checkTemplateModels(new TemplateSource(templates, null), view, h.services.store);
  }
  const LTX_MODELS = {
    checkpoints: ['ltx-2-19b-dev-fp8.safetensors'],
    latent_upscale_models: ['ltx-2-spatial-upscaler-x2-1.0.safetensors'],
    loras: ['ltx-2-19b-distilled-lora-384.safetensors'],
    text_encoders: ['gemma_3_12B_it_fp4_mixed.safetensors'],
  };

  it('with object_info, fails only for files the converted prompt loads; bypassed loaders warn', async () => {
    const r = await ltxOnWorker(LTX_MODELS);
    expect(r.status).toBe('warn');
    expect(r.message).toBe(
      'gpu1 lacks loras/ltx-2-19b-lora-camera-control-dolly-left.safetensors (ltx2.json, muted or bypassed nodes only).',
    );
    const lacking = await ltxOnWorker({ ...LTX_MODELS, latent_upscale_models: [] });
    expect(lacking.status).toBe('fail');
    expect(lacking.message).toMatch(
      /^gpu1 lacks latent_upscale_models\/ltx-2-spatial-upscaler-x2-1\.0\.safetensors \(ltx2\.json\)/,
    );
  });

  it('names a template the worker cannot run, and one that is not JSON', async () => {
    const r = await ltxOnWorker(LTX_MODELS, [
      'custom.json',
      JSON.stringify({ nodes: [{ id: 3, type: 'NotInstalledNode', mode: 0 }], links: [], version: 0.4 }),
    ]);
    expect(r.status).toBe('fail');
    expect(r.message).toContain('gpu1 cannot run custom.json: node 3 (NotInstalledNode)');
    const broken = await ltxOnWorker(LTX_MODELS, ['broken.json', '{"nodes": [']);
    expect(broken.message).toContain('broken.json is not valid JSON');
  });
});
