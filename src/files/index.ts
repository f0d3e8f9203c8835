import { join } from 'node:path';
import type { Config } from '../config/schema.js';
import type { FileStore } from './file-store.js';
import { LocalFileStore } from './local-file-store.js';

/** Opens the configured file backend. The only place that knows which file backends exist. */
export async function openFileStore(config: Config): Promise<FileStore> {
  if (config.FILES === 's3') {
    // Loaded only when used: the AWS SDK costs start-up time the local backend does not need.
    const { S3FileStore } = await import('./s3-file-store.js');
    return new S3FileStore({
      bucket: config.S3_BUCKET!,
      prefix: config.S3_PREFIX,
      endpoint: config.S3_ENDPOINT,
      region: config.S3_REGION,
      forcePathStyle: config.S3_FORCE_PATH_STYLE,
    });
  }
  return new LocalFileStore(localFilesDir(config));
}

/** `DATA_DIR/files`, the local backend's folder. */
export function localFilesDir(config: Pick<Config, 'DATA_DIR'>): string {
  return join(config.DATA_DIR, 'files');
}
