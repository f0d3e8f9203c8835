import type { Readable } from 'node:stream';

/**
 * Where users' files live: inputs (uploads), outputs (from workers), temp previews and userdata
 * (workflows, settings files). Keys look like `<user>/<area>/<relative path>` and are built only
 * by {@link userFileKey}, which refuses anything that could leave the user's own space.
 * Backends: local folder (default) and S3-compatible object storage.
 */
export interface FileStat {
  key: string;
  size: number;
  mtimeMs: number;
}

export interface WriteOptions {
  /**
   * The file's modification time (a restore keeps the original times, so galleries sorted by date
   * stay in order). The local backend sets it; object storage cannot and ignores it.
   */
  mtimeMs?: number;
}

/** Byte positions of a range read, inclusive as in HTTP's `Content-Range`. */
export interface ReadRange {
  start: number;
  /** Last byte to read; default the file's last. Past the end means up to the end. */
  end?: number | undefined;
}

export interface FileStore {
  readonly backend: 'local' | 's3';
  /** Streams `body` to `key`, replacing any file there only once the write is complete. */
  write(key: string, body: Readable | Buffer, opts?: WriteOptions): Promise<FileStat>;
  /**
   * A stream of the file, or of the bytes `range.start`…`range.end` (inclusive; clamped to the
   * file; empty when `start` is past the end). A range is read as a range from the backend
   * (object storage: a `Range` GET), never by skipping through the whole file.
   * Throws AppError FILE_NOT_FOUND when absent.
   */
  read(key: string, range?: ReadRange): Promise<Readable>;
  stat(key: string): Promise<FileStat | null>;
  /** Every file under `prefix` (recursive), sorted by key. */
  list(prefix: string): Promise<FileStat[]>;
  /**
   * Local backend only: the names of the files directly in `folder` (not below it), unsorted; no
   * per-file stat, so far cheaper than {@link list} where a name is all that is needed.
   */
  fileNames?(folder: string): Promise<string[]>;
  delete(key: string): Promise<boolean>;
  move(from: string, to: string): Promise<void>;
  /**
   * Object storage only: a URL that lets its holder PUT `key` directly (no credentials) for
   * `expiresSec` seconds, e.g. so a worker uploads an output straight to the bucket.
   */
  presignPut?(key: string, expiresSec: number): Promise<string>;
  /** Object storage only: a time-limited URL to GET `key` directly. */
  presignGet?(key: string, expiresSec: number): Promise<string>;
  /**
   * Local backend only: the file's path on this machine, for tools that need to open it (ffprobe
   * and ffmpeg seek around in a video, which a stream cannot do). Checked like every other key.
   */
  localPath?(key: string): string;
  /** Releases connections (object storage); a no-op or absent locally. */
  close?(): void;
}

export const FILE_AREAS = ['input', 'output', 'temp', 'userdata', 'loras'] as const;
export type FileArea = (typeof FILE_AREAS)[number];
