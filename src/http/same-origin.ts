import type { FastifyRequest } from 'fastify';
import { AppError } from '../errors.js';

/**
 * Refuses a request (typically a WebSocket upgrade, which carries cookies but cannot carry a CSRF
 * header) whose Origin is another site. Our own origin is the request's host (X-Forwarded-Host
 * when TRUST_PROXY is set) or the host of PUBLIC_URL. No Origin at all is allowed: browsers always
 * send one on WebSocket upgrades, so a missing one means a script or SDK, not a hijacked page.
 */
export function checkSameOrigin(request: FastifyRequest, publicUrl?: string): void {
  const origin = request.headers.origin;
  if (!origin) return;
  let host: string;
  try {
    host = new URL(origin).host;
  } catch {
    throw new AppError('CSRF_FAILED', 'Cross-site request refused.');
  }
  if (host === request.host) return;
  if (publicUrl && host === new URL(publicUrl).host) return;
  throw new AppError('CSRF_FAILED', 'Cross-site request refused.');
}
