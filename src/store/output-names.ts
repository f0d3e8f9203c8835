import type { OutputNameClaim } from './types.js';

/**
 * Where both stores keep the output name counters of {@link JobStore.nameOutputs}: as blobs, so
 * they travel with exports, backups and restores like any other blob.
 * - `output-counters` / `["<user>","<subfolder>","<prefix>"]` → the last number given out;
 * - `output-names` / `<jobId>` → `{"["<subfolder>","<prefix>",<worker counter>]": number}`.
 */
export const OUTPUT_COUNTERS_NS = 'output-counters';
export const OUTPUT_NAMES_NS = 'output-names';

export function outputCounterKey(user: string, c: OutputNameClaim): string {
  return JSON.stringify([user, c.subfolder, c.prefix]);
}

export function outputClaimKey(c: OutputNameClaim): string {
  return JSON.stringify([c.subfolder, c.prefix, c.counter]);
}

export function checkClaims(claims: readonly OutputNameClaim[]): void {
  for (const c of claims) {
    if (!Number.isSafeInteger(c.counter) || c.counter < 0)
      throw new RangeError(`invalid worker counter ${String(c.counter)}`);
    const floor = c.floor ?? 0;
    if (!Number.isSafeInteger(floor) || floor < 0) throw new RangeError(`invalid floor ${String(floor)}`);
  }
}
