/**
 * Presigned S3 URLs (Signature Version 4, query-string authentication), so a worker can PUT an
 * output straight to the bucket or a browser GET a file without credentials. Small on purpose:
 * only the `host` header is signed and the payload is `UNSIGNED-PAYLOAD`, as the SDK's own
 * presigner does. Checked against the worked example in AWS's SigV4 documentation.
 */
import { createHash, createHmac } from 'node:crypto';
import type { S3Credentials } from './s3-client.js';

export interface PresignRequest {
  method: 'GET' | 'PUT' | 'HEAD' | 'DELETE';
  /** Full object URL without a query string, e.g. `https://bucket.s3.amazonaws.com/dir/a%20b.png`. */
  url: string;
  region: string;
  credentials: S3Credentials;
  /** 1 s … 7 days. */
  expiresSec: number;
  /** Signing time. Default now. */
  now?: Date;
}

/** RFC 3986 encoding, as SigV4 wants it (encodeURIComponent leaves !'()* alone). */
export function rfc3986(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/** The path of an object URL: each key segment encoded, slashes kept. */
export function encodeKeyPath(key: string): string {
  return key.split('/').map(rfc3986).join('/');
}

const sha256Hex = (s: string) => createHash('sha256').update(s, 'utf8').digest('hex');
const hmac = (key: Buffer | string, s: string) => createHmac('sha256', key).update(s, 'utf8').digest();

function amzDate(d: Date): { date: string; time: string } {
  const time = d
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d{3}/, '');
  return { date: time.slice(0, 8), time };
}

/** Returns `url` with the SigV4 query parameters appended. */
export function presignUrl(req: PresignRequest): string {
  if (!Number.isInteger(req.expiresSec) || req.expiresSec < 1 || req.expiresSec > 604_800) {
    throw new RangeError('expiresSec must be a whole number of seconds from 1 to 604800 (7 days)');
  }
  const u = new URL(req.url);
  if (u.search) throw new Error('presignUrl: the URL must not have a query string');
  const { date, time } = amzDate(req.now ?? new Date());
  const scope = `${date}/${req.region}/s3/aws4_request`;
  const params: [string, string][] = [
    ['X-Amz-Algorithm', 'AWS4-HMAC-SHA256'],
    ['X-Amz-Credential', `${req.credentials.accessKeyId}/${scope}`],
    ['X-Amz-Date', time],
    ['X-Amz-Expires', String(req.expiresSec)],
    ['X-Amz-SignedHeaders', 'host'],
  ];
  if (req.credentials.sessionToken) params.push(['X-Amz-Security-Token', req.credentials.sessionToken]);
  const query = params
    .map(([k, v]) => [rfc3986(k), rfc3986(v)] as const)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join('&');
  // URL.host drops default ports, exactly as HTTP clients send the Host header.
  const canonicalRequest = [
    req.method,
    u.pathname || '/',
    query,
    `host:${u.host}`,
    '',
    'host',
    'UNSIGNED-PAYLOAD',
  ].join('\n');
  const stringToSign = ['AWS4-HMAC-SHA256', time, scope, sha256Hex(canonicalRequest)].join('\n');
  const kDate = hmac(`AWS4${req.credentials.secretAccessKey}`, date);
  const kSigning = hmac(hmac(hmac(kDate, req.region), 's3'), 'aws4_request');
  const signature = createHmac('sha256', kSigning).update(stringToSign, 'utf8').digest('hex');
  return `${u.origin}${u.pathname}?${query}&X-Amz-Signature=${signature}`;
}

/** The URL of an object, path-style or virtual-hosted, with or without a custom endpoint. */
export function objectUrl(opts: {
  endpoint?: string | undefined;
  region: string;
  forcePathStyle: boolean;
  bucket: string;
  key: string;
}): string {
  const path = encodeKeyPath(opts.key);
  if (!opts.endpoint) {
    const host = opts.region === 'us-east-1' ? 's3.amazonaws.com' : `s3.${opts.region}.amazonaws.com`;
    return opts.forcePathStyle
      ? `https://${host}/${opts.bucket}/${path}`
      : `https://${opts.bucket}.${host}/${path}`;
  }
  const e = new URL(opts.endpoint);
  const base = e.pathname.replace(/\/+$/, '');
  if (opts.forcePathStyle) return `${e.protocol}//${e.host}${base}/${opts.bucket}/${path}`;
  return `${e.protocol}//${opts.bucket}.${e.host}${base}/${path}`;
}
