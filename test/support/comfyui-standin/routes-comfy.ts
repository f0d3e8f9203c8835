/**
 * ComfyUI's JSON routes: metadata (system_stats, object_info, models, ...), the prompt queue
 * (`/prompt`, `/queue`, `/interrupt`) and history. Handlers follow server.py's behaviour,
 * including what crashes there (→ 500) and what is silently accepted (→ 200, empty body).
 */
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { freemem, totalmem } from 'node:os';
import type { FaultController } from './faults.js';
import { isDict, reply, type Router } from './http-util.js';
import type { Instance } from './instance.js';
import { annotatedPath } from './nodes.js';
import type { NodeCatalog } from './object-info.js';
import { pyBool, pyFloat, pyInt, pyStr } from './python-compat.js';
import type { StaticSite } from './static-files.js';
import type { ApiPrompt, DataDirs, ExtraData } from './types.js';
import { validatePrompt } from './validate.js';
import { SERVER_FEATURES } from './ws-hub.js';

/** `/models` as recorded (folder_paths.folder_names_and_paths keys). */
export const MODEL_FOLDERS = [
  'checkpoints',
  'configs',
  'loras',
  'vae',
  'text_encoders',
  'diffusion_models',
  'clip_vision',
  'style_models',
  'embeddings',
  'diffusers',
  'vae_approx',
  'controlnet',
  'gligen',
  'upscale_models',
  'custom_nodes',
  'hypernetworks',
  'photomaker',
  'classifiers',
  'model_patches',
  'audio_encoders',
];

export interface ComfyRouteDeps {
  instance(): Instance;
  catalog: NodeCatalog;
  dirs: DataDirs;
  faults: FaultController;
  models: Record<string, string[]>;
  /** ComfyUI's models/loras folder, listed on each request. */
  lorasDir?: string;
  /** Where `/internal/folder_paths` says model folders live (`<modelsDir>/<folder>`). */
  modelsDir: string;
  host: string;
  port(): number;
  /** The web frontend and custom nodes' web folders, when the stand-in was given any. */
  site: StaticSite;
  /** The installed template package's version, or null (none installed). */
  templatesVersion?: () => string | null;
}

export function addComfyRoutes(router: Router, deps: ComfyRouteDeps): void {
  addMetadataRoutes(router, deps);
  addPromptRoutes(router, deps);
  addQueueRoutes(router, deps);
  addHistoryRoutes(router, deps);
}

function systemStats(deps: ComfyRouteDeps) {
  const argv = ['main.py', '--cpu', '--listen', deps.host, '--port', String(deps.port())];
  argv.push('--input-directory', deps.dirs.input, '--output-directory', deps.dirs.output);
  argv.push('--temp-directory', deps.dirs.temp);
  const ram = { total: totalmem(), free: freemem() };
  return {
    system: {
      os: 'posix',
      ram_total: ram.total,
      ram_free: ram.free,
      comfyui_version: '0.3.64',
      required_frontend_version: '1.27.10',
      installed_templates_version: deps.templatesVersion?.() ?? null,
      required_templates_version: '0.1.95',
      python_version: `3.11.2 (comfyui-standin on node ${process.version})`,
      pytorch_version: '1.13.0a0',
      embedded_python: false,
      argv,
    },
    devices: [
      {
        name: 'cpu',
        type: 'cpu',
        index: null,
        vram_total: ram.total,
        vram_free: ram.free,
        torch_vram_total: ram.total,
        torch_vram_free: ram.free,
      },
    ],
  };
}

function addMetadataRoutes(router: Router, deps: ComfyRouteDeps): void {
  router.get(
    '/',
    () =>
      deps.site.hasIndex
        ? deps.site.index()
        : reply.text('<!doctype html><title>ComfyUI stand-in</title>\n', 200, 'text/html'),
    false,
  );
  router.get('/system_stats', () => reply.json(systemStats(deps)));
  router.get('/object_info', () => reply.json(deps.catalog.all()));
  router.get('/object_info/{node_class}', ({ params }) => {
    const cls = params.node_class!;
    const def = deps.catalog.get(cls);
    return reply.json(def ? { [cls]: def } : {});
  });
  router.get('/embeddings', () => reply.json([]));
  router.get('/extensions', () => reply.json(deps.site.active ? deps.site.extensionList() : []));
  router.get('/features', () => reply.json(SERVER_FEATURES));
  router.get('/models', () => reply.json(MODEL_FOLDERS));
  router.get('/models/{folder}', ({ params }) => {
    const folder = params.folder!;
    if (!MODEL_FOLDERS.includes(folder)) return reply.empty(404);
    if (folder === 'loras') return reply.json(deps.catalog.loraNames());
    return reply.json([...(deps.models[folder] ?? [])].sort());
  });
  // ComfyUI's internal route (no /api alias): folder → directories, as a real ComfyUI answers it.
  router.get(
    '/internal/folder_paths',
    () => reply.json(Object.fromEntries(MODEL_FOLDERS.map((f) => [f, [join(deps.modelsDir, f)]]))),
    false,
  );
  // Single-user mode answers, as recorded (users.json, settings.json).
  router.get('/users', () => reply.json({ storage: 'server', migrated: false }));
  router.get('/settings', () => reply.json({}));
}

/** The queue number: explicit `number`, else the counter (negated for `front`), which advances. */
function takeNumber(data: Record<string, unknown>, inst: Instance): number {
  if ('number' in data) return pyFloat(data.number);
  const number = pyBool(data.front) ? -inst.number : inst.number;
  inst.number++;
  return number;
}

const NO_PROMPT = {
  type: 'no_prompt',
  message: 'No prompt provided',
  details: 'No prompt provided',
  extra_info: {},
};

/** ComfyUI's POST /prompt: number first (even invalid prompts use one up), validation, queue. */
function addPromptRoutes(router: Router, deps: ComfyRouteDeps): void {
  router.get('/prompt', () => reply.json(deps.instance().queueInfo()));
  router.post('/prompt', async (ctx) => {
    const inst = deps.instance();
    const body = await ctx.json();
    const data: Record<string, unknown> = isDict(body) ? body : {};
    const number = takeNumber(data, inst);
    if (!('prompt' in data)) return reply.json({ error: NO_PROMPT, node_errors: {} }, 400);

    const promptId = 'prompt_id' in data ? pyStr(data.prompt_id) : randomUUID();
    const targets = Array.isArray(data.partial_execution_targets)
      ? data.partial_execution_targets.map(String)
      : null;
    const inputFileExists = (name: string) => existsSync(annotatedPath(name, deps.dirs));
    const result = validatePrompt(data.prompt, { catalog: deps.catalog, inputFileExists }, targets);
    const extraData = 'extra_data' in data ? data.extra_data : {};
    if (!isDict(extraData)) throw new Error('extra_data must be an object'); // ComfyUI fails here too
    if ('client_id' in data) extraData.client_id = data.client_id;
    if (!result.ok) return reply.json({ error: result.error, node_errors: result.nodeErrors }, 400);

    const prompt = data.prompt as ApiPrompt;
    inst.queue.put([number, promptId, prompt, extraData as ExtraData, result.outputs]);
    const response = reply.json({ prompt_id: promptId, number, node_errors: result.nodeErrors });
    return { ...response, after: () => deps.faults.onPromptAccepted() };
  });
}

function addQueueRoutes(router: Router, deps: ComfyRouteDeps): void {
  router.get('/queue', () => {
    const { running, pending } = deps.instance().queue.currentQueue();
    return reply.json({ queue_running: running, queue_pending: pending });
  });
  router.post('/queue', async (ctx) => {
    const body = (await ctx.json()) as Record<string, unknown>;
    const queue = deps.instance().queue;
    if ('clear' in body && body.clear) queue.wipeQueue();
    if ('delete' in body) {
      for (const id of body.delete as unknown[]) queue.deleteQueueItem((item) => item[1] === id);
    }
    return reply.empty();
  });
  router.post('/interrupt', async (ctx) => {
    let body: unknown;
    try {
      body = await ctx.json();
    } catch {
      body = {}; // no or invalid body: a global interrupt
    }
    if (!isDict(body)) throw new Error("'list' object has no attribute 'get'");
    const inst = deps.instance();
    const promptId = body.prompt_id;
    if (promptId) {
      const running = inst.queue.currentQueue().running;
      if (running.some((item) => item[1] === promptId)) inst.executor.interrupt();
    } else {
      inst.executor.interrupt();
    }
    return reply.empty();
  });
  router.post('/free', async (ctx) => {
    await ctx.json(); // nothing to unload in the stand-in, but a bad body fails like ComfyUI's
    return reply.empty();
  });
}

function addHistoryRoutes(router: Router, deps: ComfyRouteDeps): void {
  router.get('/history', ({ url }) => {
    const maxItems = url.searchParams.get('max_items');
    const offset = url.searchParams.get('offset');
    const query = {
      ...(maxItems !== null ? { maxItems: pyInt(maxItems) } : {}),
      ...(offset !== null ? { offset: pyInt(offset) } : {}),
    };
    return reply.json(deps.instance().queue.getHistory(query));
  });
  router.get('/history/{prompt_id}', ({ params }) => {
    const entry = deps.instance().queue.historyItem(params.prompt_id!);
    return reply.json(entry ? { [params.prompt_id!]: entry } : {});
  });
  router.post('/history', async (ctx) => {
    const body = (await ctx.json()) as Record<string, unknown>;
    const queue = deps.instance().queue;
    if ('clear' in body && body.clear) queue.wipeHistory();
    if ('delete' in body) for (const id of body.delete as unknown[]) queue.deleteHistoryItem(String(id));
    return reply.empty();
  });
}
