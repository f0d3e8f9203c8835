/** LoRA files for tests: minimal valid safetensors files and things that only look like one. */

/** A minimal valid safetensors file (tests, benchmarks): `tensors` F32 tensors of `n` values each. */
export function makeSafetensors(
  opts: { tensors?: number; n?: number; seed?: number; metadata?: Record<string, string> } = {},
): Buffer {
  const tensors = opts.tensors ?? 2;
  const n = opts.n ?? 4;
  const header: Record<string, unknown> = {};
  if (opts.metadata) header.__metadata__ = opts.metadata;
  for (let i = 0; i < tensors; i++)
    header[`lora_unet_${i}.lora_down.weight`] = {
      dtype: 'F32',
      shape: [n],
      data_offsets: [i * n * 4, (i + 1) * n * 4],
    };
  let json = Buffer.from(JSON.stringify(header), 'utf8');
  // Pad the header to 8 bytes with spaces, as the reference writer does.
  const pad = (8 - (json.length % 8)) % 8;
  json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  const data = Buffer.alloc(tensors * n * 4);
  for (let i = 0; i < tensors * n; i++) data.writeFloatLE(((opts.seed ?? 0) + i) / 7, i * 4);
  return Buffer.concat([len, json, data]);
}
