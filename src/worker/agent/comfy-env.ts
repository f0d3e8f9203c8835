/** Reads the ComfyUI environment snapshot sources through the shared ComfyUI client. */
import type { ComfyClient } from '../../comfy/comfy-client.js';
import { ComfyTimeoutError, ComfyUnavailableError } from '../../comfy/client-errors.js';
import type { EnvSources } from './env-snapshot.js';

/** object_info, embeddings, model lists per folder, extensions and system_stats, read in parallel. */
export async function readEnvSources(client: ComfyClient): Promise<EnvSources> {
  const [systemStats, { objectInfo }, embeddings, extensions, folders] = await Promise.all([
    client.systemStats(),
    client.objectInfoDetailed(),
    client.embeddings(),
    client.extensions(),
    client.models(),
  ]);
  const models: Record<string, string[]> = {};
  const lists = await Promise.all(folders.map((f) => client.modelsIn(f)));
  folders.forEach((f, i) => {
    const list = lists[i];
    if (list) models[f] = list;
  });
  return { systemStats, objectInfo, embeddings, models, extensions };
}

/** A failure to reach ComfyUI at all (refused, reset, no answer in time), not an HTTP answer. */
export function isUnreachable(err: unknown): boolean {
  return err instanceof ComfyUnavailableError || err instanceof ComfyTimeoutError;
}
