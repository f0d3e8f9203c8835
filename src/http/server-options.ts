import type { IncomingMessage } from 'node:http';
import type {
  FastifyError,
  FastifyInstance,
  FastifyReply,
  FastifyRequest,
  FastifyServerOptions,
} from 'fastify';
import type { Config } from '../config/schema.js';
import { AppError } from '../errors.js';
import { MAX_PATH_BYTES } from '../files/safe-path.js';
import { sendError, toAppError } from './error-handler.js';

/**
 * The longest URL path parameter the router matches. A userdata path may be MAX_PATH_BYTES long
 * and arrives percent-encoded (up to 3 characters a byte); anything longer gets 414 URI_TOO_LONG.
 * (fastify's default of 100 made long workflow names fall through to other routes.)
 */
export const MAX_PARAM_LENGTH = 3 * MAX_PATH_BYTES + 64;

/**
 * The fastify options that bound what one request may cost: body size, the time to send it,
 * URL parameter length, and what the router answers for URLs it cannot take (as JSON from the
 * error table, like every other error).
 */
export function serverOptions(
  config: Pick<Config, 'BODY_LIMIT' | 'REQUEST_TIMEOUT_MS'>,
): Pick<FastifyServerOptions, 'bodyLimit' | 'requestTimeout' | 'routerOptions' | 'frameworkErrors'> {
  return {
    bodyLimit: config.BODY_LIMIT,
    requestTimeout: config.REQUEST_TIMEOUT_MS,
    routerOptions: {
      // ComfyUI's frontend calls /api/x and /api/x/ interchangeably.
      ignoreTrailingSlash: true,
      maxParamLength: MAX_PARAM_LENGTH,
    },
    frameworkErrors: (err: FastifyError, _request: FastifyRequest, reply: FastifyReply) => {
      if (err.code === 'FST_ERR_MAX_PARAM_LENGTH') return sendError(reply, new AppError('URI_TOO_LONG'));
      if (err.code === 'FST_ERR_BAD_URL')
        return sendError(reply, new AppError('BAD_REQUEST', 'The URL is not validly encoded.'));
      const appErr = toAppError(err);
      return sendError(reply, appErr.code === 'INTERNAL' ? new AppError('BAD_REQUEST') : appErr);
    },
  };
}

function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

/**
 * Slowloris defences on the listening server: headers must arrive within HEADERS_TIMEOUT_MS, and
 * a request body that stops arriving for BODY_IDLE_TIMEOUT_MS gets its connection closed. Only
 * silence counts: a slow but steady upload (say 500 MB of video over a venue's Wi-Fi) is never
 * cut, and neither is a body we are not reading yet (the bytes wait in our buffer, not the
 * client's) nor anything once the request body is complete (responses, WebSockets, keep-alive).
 */
export function installRequestTimeouts(
  app: FastifyInstance,
  config: Pick<Config, 'HEADERS_TIMEOUT_MS' | 'BODY_IDLE_TIMEOUT_MS'>,
): void {
  app.server.headersTimeout = config.HEADERS_TIMEOUT_MS;
  const idleMs = config.BODY_IDLE_TIMEOUT_MS;
  if (idleMs <= 0) return;
  app.addHook('onRequest', (request, reply, done) => {
    const req = request.raw;
    const socket = req.socket;
    // `inject` (tests, in-process callers) hands over a stand-in socket that can neither stall nor
    // be destroyed: only real connections are watched.
    if (!hasBody(req) || req.complete || typeof socket?.destroy !== 'function') return done();
    let seen = socket.bytesRead;
    // Runs until the body is complete, also after the response: a body nobody reads (a 401, or
    // multipart sent to a JSON route) is drained by Node after the response, and a client could
    // keep trickling it on the kept-alive connection.
    const timer = setInterval(() => {
      if (req.complete || req.destroyed || socket.destroyed) return stop();
      const now = socket.bytesRead;
      // Data waiting in our own buffer means we are the slow side, not the client.
      if (now !== seen || req.readableLength > 0) {
        seen = now;
        return undefined;
      }
      stop();
      request.log.info({ idleMs }, 'request body stalled; closing the connection');
      socket.destroy();
      return undefined;
    }, idleMs);
    timer.unref();
    // Listeners go with the timer: a kept-alive connection (a worker's uploads) carries many bodies.
    const stop = () => {
      clearInterval(timer);
      socket.off('close', stop);
      req.off('end', stop);
    };
    socket.once('close', stop);
    req.once('end', stop);
    done();
  });
}
