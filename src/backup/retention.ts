/**
 * Retention: keep the newest `keep` snapshots. Old manifests are deleted first (a snapshot ends
 * the moment its manifest goes), then every object no remaining manifest refers to — except
 * objects written after `protectFrom` (the start of the current run), which another backup
 * running at the same time may be about to refer to. Leftovers of interrupted writes older than
 * an hour go too.
 */
import { listSnapshots, manifestKey, readManifest, referencedObjects } from './manifest.js';
import type { BackupTarget } from './target.js';

export interface RetentionResult {
  deletedSnapshots: string[];
  deletedObjects: number;
  freedBytes: number;
}

export async function applyRetention(
  target: BackupTarget,
  keep: number,
  protectFrom: number,
): Promise<RetentionResult> {
  const files = target.files;
  const ids = await listSnapshots(files);
  const doomed = keep > 0 ? ids.slice(0, Math.max(0, ids.length - keep)) : [];
  for (const id of doomed) await files.delete(manifestKey(id));
  const referenced = new Set<string>();
  for (const id of await listSnapshots(files)) {
    for (const k of referencedObjects(await readManifest(files, id))) referenced.add(k);
  }
  let deletedObjects = 0;
  let freedBytes = 0;
  for (const o of await files.list('objects')) {
    if (referenced.has(o.key) || o.mtimeMs >= protectFrom) continue;
    if (await files.delete(o.key)) {
      deletedObjects++;
      freedBytes += o.size;
    }
  }
  await target.removeStalePartials(Date.now() - 3_600_000);
  return { deletedSnapshots: doomed, deletedObjects, freedBytes };
}
