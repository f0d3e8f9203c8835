/**
 * The ComfyUI environment snapshot a worker uploads on registration (object_info, embeddings,
 * model lists per folder, extensions, system_stats) and its hash: sha256 of the canonical JSON
 * of the snapshot with volatile fields (free RAM/VRAM) removed, so the hash changes only when the
 * environment does, not every time memory use moves.
 */
import type { EnvSnapshot } from '../protocol.js';
import { canonicalJson, sha256Hex } from './canonical-json.js';
import type { ObjectInfo } from '../../comfy/protocol.js';
import { isPrivateLoraName, objectInfoWithOwnLoras } from '../../loras/own-loras.js';

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

/**
 * Builds the snapshot with lists sorted, so ComfyUI's listing order does not change the hash.
 * Participants' LoRAs this agent put in ComfyUI's loras folder (`_users/…`, see lora-cache.ts) are
 * left out: they are never anyone's to see or pick, and they must not change the hash.
 */
export function buildEnvSnapshot(src: EnvSources): EnvSnapshot {
  const system = (src.systemStats.system ?? {}) as Record<string, unknown>;
  const version = typeof system.comfyui_version === 'string' ? system.comfyui_version : 'unknown';
  const models: Record<string, string[]> = {};
  for (const folder of Object.keys(src.models).sort())
    models[folder] = [...(src.models[folder] ?? [])]
      .filter((n) => folder !== 'loras' || !isPrivateLoraName(n))
      .sort();
  return {
    comfyuiVersion: version,
    objectInfo: objectInfoWithOwnLoras(src.objectInfo as ObjectInfo, []),
    embeddings: [...src.embeddings].sort(),
    models,
    extensions: [...src.extensions].sort(),
    systemStats: stableSystemStats(src.systemStats),
  };
}

export function envHash(snapshot: EnvSnapshot): string {
  return sha256Hex(canonicalJson(snapshot));
}
