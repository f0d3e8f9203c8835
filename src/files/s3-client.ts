/**
 * The one place that creates S3 clients (the S3 file store and S3 backup targets), so timeouts,
 * checksums and retries are the same everywhere, and that turns the SDK's errors into sentences an
 * operator can act on.
 *
 * Works with AWS S3, Cloudflare R2 (region `auto`, an account endpoint) and MinIO (path-style).
 * Credentials: explicit ones when given, else the SDK's default chain (`AWS_ACCESS_KEY_ID` /
 * `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`, `AWS_PROFILE`, instance roles, ...).
 */
import { S3Client } from '@aws-sdk/client-s3';
import { safeRelativePath } from './safe-path.js';

export interface S3Credentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

export interface S3ClientSettings {
  /** `https://<account>.r2.cloudflarestorage.com`, `http://minio:9000`, ...; unset for AWS S3. */
  endpoint?: string | undefined;
  /** `auto` for R2; the bucket's region for AWS. */
  region: string;
  /** `https://endpoint/bucket/key` instead of `https://bucket.endpoint/key` (MinIO, s3rver). */
  forcePathStyle: boolean;
  /** Explicit credentials; default: the SDK's default chain (the standard AWS variables). */
  credentials?: S3Credentials | undefined;
  /** Attempts per request, including the first. Default 3. */
  maxAttempts?: number;
  /** Give up connecting after this long. Default 5000 ms. */
  connectTimeoutMs?: number;
}

/** Creates a client. Cheap; one per store or target. */
export function createS3Client(s: S3ClientSettings): S3Client {
  return new S3Client({
    region: s.region,
    forcePathStyle: s.forcePathStyle,
    ...(s.endpoint ? { endpoint: s.endpoint } : {}),
    ...(s.credentials ? { credentials: s.credentials } : {}),
    maxAttempts: s.maxAttempts ?? 3,
    // R2, MinIO and older S3-compatible servers reject or ignore the newer default checksums.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    requestHandler: { connectionTimeout: s.connectTimeoutMs ?? 5000, requestTimeout: 120_000 },
  });
}

/** `''` or a safe path ending in `/`: the key prefix under which a store or target keeps its objects. */
export function normalizePrefix(prefix: string | undefined): string {
  const p = safeRelativePath((prefix ?? '').replace(/^\/+/, ''));
  return p ? `${p}/` : '';
}

/** `bucket/key` for x-amz-copy-source: each segment URL-encoded, the slashes kept. */
export function copySource(bucket: string, key: string): string {
  return `${bucket}/${key.split('/').map(encodeURIComponent).join('/')}`;
}

interface SdkError {
  name?: string;
  code?: string;
  Code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
}

/** HTTP status of an SDK error, when the server answered. */
export function s3Status(err: unknown): number | undefined {
  return (err as SdkError | undefined)?.$metadata?.httpStatusCode;
}

/** True for "no such key" answers (GetObject's NoSuchKey, HeadObject's bare 404). */
export function isNotFound(err: unknown): boolean {
  const e = err as SdkError | undefined;
  return (
    e?.name === 'NoSuchKey' || e?.name === 'NotFound' || (s3Status(err) === 404 && e?.name !== 'NoSuchBucket')
  );
}

export type S3Problem = 'credentials' | 'bucket' | 'unreachable' | 'other';

/** What went wrong talking to S3, for an error message and an exit code. */
export function classifyS3Error(err: unknown): { problem: S3Problem; message: string } {
  const e = (err ?? {}) as SdkError;
  const name = e.name ?? '';
  const code = e.code ?? '';
  const status = s3Status(err);
  const raw = e.message ?? String(err);
  if (
    name === 'NoSuchBucket' ||
    (status === 404 && /bucket/i.test(raw)) ||
    (status === 301 && name === 'PermanentRedirect')
  ) {
    return { problem: 'bucket', message: `the bucket does not exist (or is in another region): ${raw}` };
  }
  if (
    [
      'InvalidAccessKeyId',
      'SignatureDoesNotMatch',
      'AccessDenied',
      'Forbidden',
      'InvalidToken',
      'ExpiredToken',
      'CredentialsProviderError',
      'Unauthorized',
    ].includes(name) ||
    status === 401 ||
    status === 403 ||
    /could not load credentials|credential/i.test(raw)
  ) {
    return {
      problem: 'credentials',
      message: `the credentials were refused or are missing (${name || `HTTP ${status ?? '?'}`}): ${raw}`,
    };
  }
  if (
    /^(ECONNREFUSED|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|ECONNRESET|EHOSTUNREACH|ENETUNREACH|EPIPE)$/.test(code) ||
    name === 'TimeoutError' ||
    /ECONNREFUSED|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|socket hang up|timed? ?out/i.test(
      raw,
    )
  ) {
    return { problem: 'unreachable', message: `the endpoint cannot be reached: ${raw}` };
  }
  return { problem: 'other', message: raw };
}
