/**
 * `Accept-Encoding` negotiation (RFC 9110 §12.5.3) for files stored with compressed copies: the
 * smallest acceptable of brotli, then gzip, else the file as it is. A coding with `q=0` is
 * refused; `*` stands for every coding not named; `identity` is always acceptable (we never answer
 * 406: an uncompressed file is the safe answer to anything odd).
 */

export type ContentCoding = 'br' | 'gzip';

/** In order of preference: brotli files are about 20 % smaller than gzip ones. */
const PREFERENCE: readonly ContentCoding[] = ['br', 'gzip'];

/** Longer headers are not something a browser sends; treated as absent. */
const MAX_HEADER = 1024;

/** The q-value of each coding named in the header (lower-case names; `x-gzip` counts as gzip). */
function qualities(header: string): Map<string, number> {
  const q = new Map<string, number>();
  for (const part of header.split(',')) {
    const [rawName, ...params] = part.split(';');
    let name = rawName!.trim().toLowerCase();
    if (!name) continue;
    if (name === 'x-gzip') name = 'gzip';
    let value = 1;
    for (const p of params) {
      const m = /^\s*q\s*=\s*([0-9.]+)\s*$/i.exec(p);
      if (m) value = Math.min(1, Number(m[1]) || 0);
    }
    // The first mention wins, as for any duplicated list member.
    if (!q.has(name)) q.set(name, value);
  }
  return q;
}

/**
 * The coding to send, among `available`, for this `Accept-Encoding`; `identity` when none is
 * acceptable or the header is absent (a client that says nothing may not decode anything).
 */
export function chooseEncoding(
  header: string | undefined,
  available: readonly ContentCoding[],
): ContentCoding | 'identity' {
  if (!header || header.length > MAX_HEADER || available.length === 0) return 'identity';
  const q = qualities(header);
  const star = q.get('*');
  let best: ContentCoding | 'identity' = 'identity';
  let bestQ = 0;
  for (const c of PREFERENCE) {
    if (!available.includes(c)) continue;
    const v = q.get(c) ?? star ?? 0;
    // Strictly greater: on equal q-values the earlier (smaller) coding stays.
    if (v > bestQ) {
      best = c;
      bestQ = v;
    }
  }
  return best;
}
