import jsQRModule from 'jsqr';

// jsqr is CommonJS whose typings declare an ES default export; at run time the module is the function.
const jsQR = jsQRModule.default;

/**
 * Decodes an SVG QR code the way a phone would: rasterise what the SVG draws (its white square and
 * its path of dark rectangles) into RGBA pixels, then read it with jsQR, an independent decoder.
 */
export function decodeSvgQr(svg: string, scale = 4): string | null {
  const box = /viewBox="0 0 (\d+) (\d+)"/.exec(svg);
  const d = /<path d="([^"]*)"/.exec(svg);
  if (!box || !d) return null;
  const size = Number(box[1]);
  const px = size * scale;
  const rgba = new Uint8ClampedArray(px * px * 4).fill(255);
  for (const m of d[1]!.matchAll(/M(\d+) (\d+)h(\d+)v1h-\d+z/g)) {
    const [x, y, w] = [Number(m[1]), Number(m[2]), Number(m[3])];
    for (let yy = y * scale; yy < (y + 1) * scale; yy++) {
      for (let xx = x * scale; xx < (x + w) * scale; xx++) {
        const i = (yy * px + xx) * 4;
        rgba[i] = rgba[i + 1] = rgba[i + 2] = 0;
      }
    }
  }
  return jsQR(rgba, px, px, { inversionAttempts: 'dontInvert' })?.data ?? null;
}
