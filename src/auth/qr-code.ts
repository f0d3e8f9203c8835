import qrcode from 'qrcode-generator';

/**
 * QR codes for login cards, from the `qrcode-generator` package (MIT, no dependencies): byte mode,
 * error correction level M (readable with 15 % of the code damaged: a folded or smudged card), the
 * smallest version that fits. Rendered here as one SVG path so the card page needs no script.
 */
export const QR_QUIET_ZONE = 4;

/** The modules of the code, `true` = dark, rows top to bottom, without the quiet zone. */
export function qrMatrix(text: string): boolean[][] {
  const qr = qrcode(0, 'M');
  qr.addData(text, 'Byte');
  qr.make();
  const n = qr.getModuleCount();
  return Array.from({ length: n }, (_, r) => Array.from({ length: n }, (_, c) => qr.isDark(r, c)));
}

/** An inline SVG of the code with its quiet zone; scales to its box (set the size in CSS). */
export function qrSvg(text: string, label: string): string {
  const m = qrMatrix(text);
  const size = m.length + 2 * QR_QUIET_ZONE;
  let d = '';
  m.forEach((row, r) => {
    // Runs of dark modules as one rectangle each keep the path short.
    for (let c = 0; c < row.length; c++) {
      if (!row[c]) continue;
      let end = c;
      while (end + 1 < row.length && row[end + 1]) end++;
      d += `M${c + QR_QUIET_ZONE} ${r + QR_QUIET_ZONE}h${end - c + 1}v1h-${end - c + 1}z`;
      c = end;
    }
  });
  return `<svg class="qr" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${size} ${size}" shape-rendering="crispEdges" role="img" aria-label="${escapeHtml(label)}"><rect width="${size}" height="${size}" fill="#fff"/><path d="${d}" fill="#000"/></svg>`;
}

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
