/** Hashing and verifying streams, and a small bounded worker pool, for backup and restore. */
import { createHash } from 'node:crypto';
import { Transform, type Readable } from 'node:stream';
import { BackupError, EXIT } from './errors.js';

export interface Digest {
  sha256: string;
  size: number;
}

/** Reads a stream to its end; its sha256 and size. `onBytes` sees every chunk's length. */
export async function hashStream(stream: Readable, onBytes?: (n: number) => void): Promise<Digest> {
  const h = createHash('sha256');
  let size = 0;
  for await (const c of stream) {
    const chunk = c as Uint8Array;
    h.update(chunk);
    size += chunk.length;
    onBytes?.(chunk.length);
  }
  return { sha256: h.digest('hex'), size };
}

/** A pass-through that hashes what flows through it; `digest()` once it ended. */
export function hashingTap(onBytes?: (n: number) => void): Transform & { digest(): Digest } {
  const h = createHash('sha256');
  let size = 0;
  let result: Digest | undefined;
  const t = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      h.update(chunk);
      size += chunk.length;
      onBytes?.(chunk.length);
      cb(null, chunk);
    },
    flush(cb) {
      result = { sha256: h.digest('hex'), size };
      cb();
    },
  });
  return Object.assign(t, {
    digest(): Digest {
      if (!result) throw new Error('hashingTap: the stream has not ended');
      return result;
    },
  });
}

/**
 * A pass-through that fails — before its end is signalled, so a consumer never commits the data —
 * when the bytes that flowed through do not have the expected size and sha256.
 */
export function verifying(expected: Digest, what: string, onBytes?: (n: number) => void): Transform {
  const h = createHash('sha256');
  let size = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      size += chunk.length;
      if (size > expected.size) {
        cb(new BackupError(`${what}: more bytes than the ${expected.size} recorded`, EXIT.VERIFY));
        return;
      }
      h.update(chunk);
      onBytes?.(chunk.length);
      cb(null, chunk);
    },
    flush(cb) {
      const sha256 = h.digest('hex');
      if (size !== expected.size || sha256 !== expected.sha256) {
        cb(
          new BackupError(
            `${what}: checksum mismatch (expected ${expected.size} bytes sha256 ${expected.sha256.slice(0, 16)}…, got ${size} bytes ${sha256.slice(0, 16)}…)`,
            EXIT.VERIFY,
          ),
        );
        return;
      }
      cb();
    },
  });
}

/**
 * Runs `fn` over `items` with at most `concurrency` at a time. Stops starting new items at the
 * first failure (or abort), waits for those running, and rethrows the first failure.
 */
export async function runPool<T>(
  items: readonly T[],
  concurrency: number,
  fn: (item: T) => Promise<void>,
  signal?: AbortSignal,
): Promise<void> {
  let next = 0;
  let failure: { err: unknown } | undefined;
  const worker = async (): Promise<void> => {
    while (!failure && next < items.length) {
      if (signal?.aborted) {
        failure ??= { err: signal.reason ?? new Error('aborted') };
        return;
      }
      const item = items[next++]!;
      try {
        await fn(item);
      } catch (err) {
        failure ??= { err };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, items.length)) }, worker));
  if (failure) throw failure.err;
}
