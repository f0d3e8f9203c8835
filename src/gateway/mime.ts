import { extname } from 'node:path';

const TYPES: Record<string, string> = {
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.webp': 'image/webp',
  '.gif': 'image/gif',
  '.bmp': 'image/bmp',
  '.tif': 'image/tiff',
  '.tiff': 'image/tiff',
  '.avif': 'image/avif',
  '.svg': 'image/svg+xml',
  '.ico': 'image/vnd.microsoft.icon',
  '.mp4': 'video/mp4',
  '.webm': 'video/webm',
  '.mov': 'video/quicktime',
  '.mkv': 'video/x-matroska',
  '.avi': 'video/x-msvideo',
  '.m4v': 'video/x-m4v',
  '.mp3': 'audio/mpeg',
  '.wav': 'audio/x-wav',
  '.flac': 'audio/flac',
  '.ogg': 'audio/ogg',
  '.opus': 'audio/ogg',
  '.m4a': 'audio/mp4',
  '.aac': 'audio/aac',
  '.json': 'application/json',
  '.txt': 'text/plain',
  '.md': 'text/markdown',
  '.csv': 'text/csv',
  '.css': 'text/css',
  '.html': 'text/html',
  '.htm': 'text/html',
  '.js': 'text/javascript',
  '.mjs': 'text/javascript',
  '.xml': 'application/xml',
  '.glb': 'model/gltf-binary',
  '.gltf': 'model/gltf+json',
  '.obj': 'model/obj',
  '.safetensors': 'application/octet-stream',
  '.latent': 'application/octet-stream',
  '.zip': 'application/zip',
};

/** A content type from the file name, as Python's `mimetypes.guess_type` would give for media. */
export function contentTypeOf(filename: string): string {
  return TYPES[extname(filename).toLowerCase()] ?? 'application/octet-stream';
}

/**
 * Types that can run script in our origin if rendered inline (HTML, JS, CSS, SVG, XML): ComfyUI
 * serves these as downloads, and so do we.
 */
export function isDangerousContentType(type: string): boolean {
  const t = type.split(';')[0]!.trim().toLowerCase();
  return (
    t === 'text/html' ||
    t === 'application/xhtml+xml' ||
    t === 'text/javascript' ||
    t === 'application/javascript' ||
    t === 'text/css' ||
    t === 'image/svg+xml' ||
    t === 'application/xml' ||
    t === 'text/xml' ||
    t.endsWith('+xml')
  );
}

export function mediaKind(filename: string): 'image' | 'video' | 'audio' | 'other' {
  const t = contentTypeOf(filename);
  if (t === 'image/svg+xml') return 'other';
  if (t.startsWith('image/')) return 'image';
  if (t.startsWith('video/')) return 'video';
  if (t.startsWith('audio/')) return 'audio';
  return 'other';
}

/** A `Content-Disposition` filename parameter, quoted safely (RFC 6266), with a UTF-8 variant. */
export function dispositionFilename(filename: string): string {
  const ascii = filename.replace(/[^\x20-\x7e]/g, '_').replace(/["\\]/g, '_');
  return `filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(filename)}`;
}
