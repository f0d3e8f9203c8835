import type { FileStore } from '../files/file-store.js';
import { userFileKey } from '../files/safe-path.js';
import { getCurrentEnv } from '../dispatch/env-snapshots.js';
import type { BlobStore } from '../store/types.js';
import type { EnvSnapshot } from '../worker/protocol.js';
import { contentTypeOf } from './mime.js';

/** Shown (as a header and in the workshop banner) while no worker has ever described its ComfyUI. */
export const NO_ENV_HINT =
  'No GPU worker has connected yet, so the node list is empty. Start a worker agent (comfy-multi worker) and reload the page.';

export const EMPTY_SYSTEM_STATS = {
  system: {
    os: 'unknown',
    ram_total: 0,
    ram_free: 0,
    comfyui_version: 'unknown',
    required_frontend_version: '',
    installed_templates_version: null,
    required_templates_version: null,
    python_version: '',
    pytorch_version: '',
    embedded_python: false,
    argv: [] as string[],
  },
  devices: [] as unknown[],
};

/**
 * A worker's `system_stats` as a participant should see it: the fields the frontend's schema
 * requires are always present (the worker leaves out volatile ones such as free RAM so its
 * snapshot hash stays stable), and the worker's command line, which names its folders, is hidden.
 */
export function participantSystemStats(raw: Record<string, unknown>): typeof EMPTY_SYSTEM_STATS {
  const system = {
    ...EMPTY_SYSTEM_STATS.system,
    ...(raw.system as object | undefined),
    argv: [] as string[],
  };
  const devices = Array.isArray(raw.devices)
    ? raw.devices.map((d: Record<string, unknown>) => ({ vram_free: 0, torch_vram_free: 0, ...d }))
    : [];
  return { ...raw, system, devices } as typeof EMPTY_SYSTEM_STATS;
}

/** The current environment snapshot, or null when none was ever uploaded. */
export async function currentEnv(store: BlobStore): Promise<EnvSnapshot | null> {
  return (await getCurrentEnv(store))?.snapshot ?? null;
}

/** Top-level files of one of the user's areas, newest first (ComfyUI's `/internal/files/<type>`). */
export async function topLevelFiles(
  files: FileStore,
  user: string,
  area: 'input' | 'output' | 'temp',
): Promise<{ name: string; mtimeMs: number }[]> {
  const prefix = `${userFileKey(user, area)}/`;
  const all = await files.list(prefix);
  const out: { name: string; mtimeMs: number }[] = [];
  for (const f of all) {
    if (!f.key.startsWith(prefix)) continue;
    const rel = f.key.slice(prefix.length);
    if (rel.includes('/') || rel.startsWith('.')) continue;
    out.push({ name: rel, mtimeMs: f.mtimeMs });
  }
  return out.sort((a, b) => b.mtimeMs - a.mtimeMs);
}

type Kind = 'image' | 'audio' | 'video' | 'latent';

/** The loader nodes whose combo lists the files of the input folder, and which files they take. */
const FILE_COMBOS: { node: string; input: string; kind: Kind }[] = [
  { node: 'LoadImage', input: 'image', kind: 'image' },
  { node: 'LoadImageMask', input: 'image', kind: 'image' },
  { node: 'LoadAudio', input: 'audio', kind: 'audio' },
  { node: 'LoadVideo', input: 'file', kind: 'video' },
  { node: 'LoadLatent', input: 'latent', kind: 'latent' },
];

function fits(name: string, kind: Kind): boolean {
  if (kind === 'latent') return name.toLowerCase().endsWith('.latent');
  return contentTypeOf(name).startsWith(`${kind}/`) && !name.toLowerCase().endsWith('.svg');
}

/**
 * object_info as this user's ComfyUI would answer it: the worker's node definitions, with the
 * file combos of the loader nodes (LoadImage & co.) listing this user's own uploads instead of the
 * worker's input folder. Only the patched nodes are copied; the rest is shared.
 */
export function objectInfoForUser(
  objectInfo: Record<string, unknown>,
  inputNames: string[],
): Record<string, unknown> {
  const out: Record<string, unknown> = { ...objectInfo };
  const sorted = [...inputNames].sort();
  for (const { node, input, kind } of FILE_COMBOS) {
    const def = objectInfo[node] as { input?: { required?: Record<string, unknown> } } | undefined;
    const spec = def?.input?.required?.[input];
    if (!Array.isArray(spec)) continue;
    const names = sorted.filter((n) => fits(n, kind));
    let newSpec: unknown[];
    if (Array.isArray(spec[0])) newSpec = [names, ...spec.slice(1)];
    else if (
      spec[0] === 'COMBO' &&
      typeof spec[1] === 'object' &&
      spec[1] !== null &&
      Array.isArray((spec[1] as { options?: unknown }).options)
    ) {
      newSpec = ['COMBO', { ...(spec[1] as object), options: names }, ...spec.slice(2)];
    } else continue;
    out[node] = { ...def, input: { ...def!.input, required: { ...def!.input!.required, [input]: newSpec } } };
  }
  return out;
}

/** Server feature flags, as ComfyUI's `feature_flags.get_server_features()` answers them. */
export function serverFeatures(uploadLimit: number): Record<string, unknown> {
  return {
    supports_preview_metadata: true,
    max_upload_size: uploadLimit,
    node_replacements: true,
    // We have no asset database: keep the frontend on the plain file APIs.
    assets: false,
  };
}
