import { Readable } from 'node:stream';

/**
 * A streaming ZIP writer: "stored" entries (no compression; images and videos do not shrink
 * anyway), CRC-32 computed while the data streams through, sizes and CRC in a data descriptor
 * after each entry, so nothing is buffered. No ZIP64: an archive stops with an error before it
 * would pass 4 GiB or 65,535 entries.
 */

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** Continues a CRC-32 (IEEE) over `buf`; start with 0. */
export function crc32(buf: Uint8Array, crc = 0): number {
  let c = ~crc >>> 0;
  for (let i = 0; i < buf.length; i++) c = CRC_TABLE[(c ^ buf[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

export interface ZipEntry {
  /** Path inside the archive, `/`-separated. */
  name: string;
  mtime: Date;
  open(): Promise<Readable> | Readable;
}

const MAX_OFFSET = 0xffffffff;
const MAX_ENTRIES = 0xffff;
const FLAGS = 0x0008 | 0x0800; // sizes in a data descriptor; UTF-8 names

function dosDateTime(d: Date): { time: number; date: number } {
  const year = Math.min(Math.max(d.getFullYear(), 1980), 2107);
  return {
    time:
      ((d.getHours() & 0x1f) << 11) |
      ((d.getMinutes() & 0x3f) << 5) |
      (Math.floor(d.getSeconds() / 2) & 0x1f),
    date: (((year - 1980) & 0x7f) << 9) | (((d.getMonth() + 1) & 0xf) << 5) | (d.getDate() & 0x1f),
  };
}

interface Written {
  name: Buffer;
  time: number;
  date: number;
  crc: number;
  size: number;
  offset: number;
}

async function* zipChunks(entries: AsyncIterable<ZipEntry> | Iterable<ZipEntry>): AsyncGenerator<Buffer> {
  const written: Written[] = [];
  let offset = 0;
  const room = (n: number) => {
    if (offset + n > MAX_OFFSET)
      throw new Error('The archive would be larger than 4 GiB (ZIP64 is not supported).');
  };
  for await (const entry of entries) {
    if (written.length >= MAX_ENTRIES) throw new Error('The archive would have more than 65,535 entries.');
    const name = Buffer.from(entry.name, 'utf8');
    const { time, date } = dosDateTime(entry.mtime);
    const header = Buffer.alloc(30);
    header.writeUInt32LE(0x04034b50, 0);
    header.writeUInt16LE(20, 4);
    header.writeUInt16LE(FLAGS, 6);
    header.writeUInt16LE(0, 8); // stored
    header.writeUInt16LE(time, 10);
    header.writeUInt16LE(date, 12);
    // CRC and sizes (14..25) stay 0: they follow in the data descriptor.
    header.writeUInt16LE(name.length, 26);
    header.writeUInt16LE(0, 28);
    room(header.length + name.length);
    const start = offset;
    yield header;
    yield name;
    offset += header.length + name.length;
    let crc = 0;
    let size = 0;
    for await (const chunk of await entry.open()) {
      const b = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array);
      room(b.length);
      crc = crc32(b, crc);
      size += b.length;
      offset += b.length;
      yield b;
    }
    const desc = Buffer.alloc(16);
    desc.writeUInt32LE(0x08074b50, 0);
    desc.writeUInt32LE(crc, 4);
    desc.writeUInt32LE(size, 8);
    desc.writeUInt32LE(size, 12);
    room(desc.length);
    yield desc;
    offset += desc.length;
    written.push({ name, time, date, crc, size, offset: start });
  }
  const cdStart = offset;
  for (const w of written) {
    const h = Buffer.alloc(46);
    h.writeUInt32LE(0x02014b50, 0);
    h.writeUInt16LE(20, 4); // made by: MS-DOS/FAT semantics, spec 2.0
    h.writeUInt16LE(20, 6);
    h.writeUInt16LE(FLAGS, 8);
    h.writeUInt16LE(0, 10);
    h.writeUInt16LE(w.time, 12);
    h.writeUInt16LE(w.date, 14);
    h.writeUInt32LE(w.crc, 16);
    h.writeUInt32LE(w.size, 20);
    h.writeUInt32LE(w.size, 24);
    h.writeUInt16LE(w.name.length, 28);
    // extra, comment, disk, internal and external attributes: 0
    h.writeUInt32LE(w.offset, 42);
    room(h.length + w.name.length);
    yield h;
    yield w.name;
    offset += h.length + w.name.length;
  }
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(written.length, 8);
  end.writeUInt16LE(written.length, 10);
  end.writeUInt32LE(offset - cdStart, 12);
  end.writeUInt32LE(cdStart, 16);
  yield end;
}

/** A readable ZIP archive of the entries, produced as it is read. */
export function zipStream(entries: AsyncIterable<ZipEntry> | Iterable<ZipEntry>): Readable {
  return Readable.from(zipChunks(entries), { objectMode: false });
}
