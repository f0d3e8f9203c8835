/**
 * The ComfyUI environment snapshot a worker uploads on registration (object_info, embeddings,
 * model lists per folder, extensions, system_stats) and its hash: sha256 of the canonical JSON
 * of the snapshot with volatile fields (free RAM/VRAM) removed, so the hash changes only when the
 * environment does, not every time memory use moves.
 */
import type { EnvSnapshot } from '../protocol.js';
import { canonicalJson, sha256Hex } from './canonical-json.js';

/** Fields of `/system_stats` that change while ComfyUI runs; left out of the snapshot. */
const VOLATILE_SYSTEM = new Set(['ram_free']);
const VOLATILE_DEVICE = new Set(['vram_free', 'torch_vram_free']);

/** `/system_stats` without free RAM/VRAM. */
export function stableSystemStats(stats: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...stats };
  const system = stats.system;
  if (system && typeof system === 'object' && !Array.isArray(system)) {
    out.system = Object.fromEntries(Object.entries(system).filter(([k]) => !VOLATILE_SYSTEM.has(k)));
  }
  if (Array.isArray(stats.devices)) {
    out.devices = stats.devices.map((d: unknown) =>
      d && typeof d === 'object' && !Array.isArray(d)
        ? Object.fromEntries(Object.entries(d).filter(([k]) => !VOLATILE_DEVICE.has(k)))
        : d,
    );
  }
  return out;
}

export interface EnvSources {
  systemStats: Record<string, unknown>;
  objectInfo: Record<string, unknown>;
  embeddings: string[];
  /** Folder name → files, e.g. `checkpoints` → `['flux.safetensors']`. */
  models: Record<string, string[]>;
  extensions: string[];
}

/** Builds the snapshot with lists sorted, so ComfyUI's listing order does not change the hash. */
export function buildEnvSnapshot(src: EnvSources): EnvSnapshot {
  const system = (src.systemStats.system ?? {}) as Record<string, unknown>;
  const version = typeof system.comfyui_version === 'string' ? system.comfyui_version : 'unknown';
  const models: Record<string, string[]> = {};
  for (const folder of Object.keys(src.models).sort())
    models[folder] = [...(src.models[folder] ?? [])].sort();
  return {
    comfyuiVersion: version,
    objectInfo: src.objectInfo,
    embeddings: [...src.embeddings].sort(),
    models,
    extensions: [...src.extensions].sort(),
    systemStats: stableSystemStats(src.systemStats),
  };
}

export function envHash(snapshot: EnvSnapshot): string {
  return sha256Hex(canonicalJson(snapshot));
}
