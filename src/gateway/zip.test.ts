import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { readZip } from '../../test/support/gateway-kit.js';
import { crc32, zipStream } from './zip.js';

async function collect(r: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of r) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

describe('zip writer', () => {
  it('computes the standard CRC-32', () => {
    expect(crc32(Buffer.from('123456789'))).toBe(0xcbf43926);
    expect(crc32(Buffer.alloc(0))).toBe(0);
    const whole = crc32(Buffer.from('hello world'));
    expect(crc32(Buffer.from(' world'), crc32(Buffer.from('hello')))).toBe(whole);
  });

  it('streams stored entries that read back byte for byte', async () => {
    const big = Buffer.alloc(300_000);
    for (let i = 0; i < big.length; i++) big[i] = (i * 7) & 0xff;
    const entries = [
      {
        name: 'a.png',
        mtime: new Date('2026-11-28T12:00:00Z'),
        open: () => Readable.from([Buffer.from('first')]),
      },
      {
        name: 'job/ünïcode ☃.bin',
        mtime: new Date(),
        open: () => Readable.from([big.subarray(0, 1000), big.subarray(1000)]),
      },
      { name: 'empty.txt', mtime: new Date(), open: () => Readable.from([]) },
    ];
    const zip = await collect(zipStream(entries));
    const read = readZip(zip);
    expect(read.map((e) => e.name)).toEqual(['a.png', 'job/ünïcode ☃.bin', 'empty.txt']);
    expect(read[0]!.data.toString()).toBe('first');
    expect(read[1]!.data.equals(big)).toBe(true);
    expect(read[2]!.data.length).toBe(0);

    if (existsSync('/usr/bin/unzip')) {
      const dir = await mkdtemp(join(tmpdir(), 'cm-zip-'));
      try {
        await writeFile(join(dir, 't.zip'), zip);
        const r = spawnSync('/usr/bin/unzip', ['-t', join(dir, 't.zip')], { encoding: 'utf8' });
        expect(r.stdout).toMatch(/No errors detected/);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    }
  });

  it('makes a valid empty archive', async () => {
    const zip = await collect(zipStream([]));
    expect(zip.length).toBe(22);
    expect(readZip(zip)).toEqual([]);
  });
});
