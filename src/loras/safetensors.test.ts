/**
 * The safetensors check on its own, fed the way uploads arrive: in chunks of any size, so the
 * length prefix and the header may be split anywhere.
 */
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { makeSafetensors } from '../../test/support/loras.js';
import { checkLoraName, SafetensorsCheck } from './safetensors.js';

async function check(bytes: Buffer, chunk: number): Promise<ReturnType<SafetensorsCheck['result']>> {
  const parts: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += chunk) parts.push(bytes.subarray(i, i + chunk));
  const c = new SafetensorsCheck();
  let seen = 0;
  await pipeline(
    Readable.from(parts),
    c,
    new Writable({
      write(b: Buffer, _e, cb) {
        seen += b.length;
        cb();
      },
    }),
  );
  expect(seen).toBe(bytes.length);
  return c.result();
}

describe('SafetensorsCheck', () => {
  const good = makeSafetensors({ tensors: 5, n: 33, metadata: { format: 'pt' } });

  it('passes a good file through whatever the chunking', async () => {
    for (const chunk of [1, 3, 7, 8, 9, 64, good.length]) {
      expect(await check(good, chunk)).toMatchObject({ tensors: 5, dataLength: 5 * 33 * 4 });
    }
  });

  it('fails a file cut short or with bytes after the data, whatever the chunking', async () => {
    for (const chunk of [1, 5, 1000]) {
      await expect(check(good.subarray(0, good.length - 1), chunk)).rejects.toThrow(/past the end/);
      await expect(check(Buffer.concat([good, Buffer.from([0])]), chunk)).rejects.toThrow(/after the last/);
      await expect(check(good.subarray(0, 12), chunk)).rejects.toThrow(/ends inside its header/);
      await expect(check(good.subarray(0, 5), chunk)).rejects.toThrow(/too short/);
    }
  });

  it('refuses mis-sized, overlapping and unknown tensors', async () => {
    const file = (header: object, data: number) => {
      const json = Buffer.from(JSON.stringify(header));
      const len = Buffer.alloc(8);
      len.writeBigUInt64LE(BigInt(json.length));
      return Buffer.concat([len, json, Buffer.alloc(data)]);
    };
    await expect(
      check(file({ a: { dtype: 'F16', shape: [4], data_offsets: [0, 6] } }, 6), 4),
    ).rejects.toThrow(/size its dtype and shape say/);
    await expect(
      check(
        file(
          {
            a: { dtype: 'U8', shape: [4], data_offsets: [0, 4] },
            b: { dtype: 'U8', shape: [4], data_offsets: [2, 6] },
          },
          6,
        ),
        4,
      ),
    ).rejects.toThrow(/overlap or leave gaps/);
    await expect(check(file({ a: { dtype: 'Q4', shape: [4], data_offsets: [0, 2] } }, 2), 4)).rejects.toThrow(
      /unknown dtype/,
    );
    await expect(check(file({ __metadata__: { a: 1 } }, 0), 4)).rejects.toThrow(/__metadata__/);
    await expect(
      check(file({ a: { dtype: 'U8', shape: [-1], data_offsets: [0, 0] } }, 0), 4),
    ).rejects.toThrow(/not described/);
  });

  it('names: .safetensors only, one file name, no pickles', () => {
    expect(checkLoraName(' My Style.safetensors ')).toBe('My Style.safetensors');
    expect(checkLoraName('x.SAFETENSORS')).toBe('x.SAFETENSORS');
    for (const bad of ['a.ckpt', 'a.pt', 'a.pth', 'a.bin', 'a.pkl'])
      expect(() => checkLoraName(bad)).toThrow(/pickle/);
    for (const bad of ['a/b.safetensors', '..\\b.safetensors', '.hidden.safetensors', '_users.safetensors'])
      expect(() => checkLoraName(bad)).toThrow(/one file name/);
    expect(() => checkLoraName('a.safetensors.txt')).toThrow(/must end in .safetensors/);
  });
});
