import { describe, expect, it } from 'vitest';
import { loadConfig } from './load-config.js';
import { multiProcessNotes } from './cluster-check.js';

const base = { DATA_DIR: '/tmp/cm-check', STORE: 'redis', REDIS_URL: 'redis://127.0.0.1:1' };

describe('multiProcessNotes', () => {
  it('says nothing for SQLite or a Redis + S3 setup with an s3:// backup target', () => {
    expect(multiProcessNotes(loadConfig({ DATA_DIR: '/tmp/cm-check', FILES: 'local' }))).toEqual([]);
    expect(
      multiProcessNotes(
        loadConfig({
          ...base,
          FILES: 's3',
          S3_BUCKET: 'files',
          BACKUP_INTERVAL: '6h',
          BACKUP_TARGET: 's3://backups/cm/',
        }),
      ),
    ).toEqual([]);
  });

  it('names FILES=local and a local backup folder with Redis', () => {
    const notes = multiProcessNotes(
      loadConfig({ ...base, FILES: 'local', BACKUP_INTERVAL: '6h', BACKUP_TARGET: '/mnt/backups' }),
    );
    expect(notes).toEqual([
      expect.stringMatching(/^STORE=redis with FILES=local: .*FILES=s3\.$/),
      expect.stringMatching(/^BACKUP_TARGET is a local folder: .*s3:\/\/ target/),
    ]);
  });
});
