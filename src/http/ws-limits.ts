import type { WebSocketServer } from 'ws';

/**
 * The largest WebSocket message a browser may send: a participant's ComfyUI frontend sends only
 * small JSON (`feature_flags`, a few hundred bytes) and the dashboard's live socket nothing of
 * size, so 64 kB is plenty and keeps a participant from making the server buffer ~100 MB (ws's
 * default) per frame.
 */
export const BROWSER_WS_MAX_PAYLOAD = 64 * 1024;

/** The message limit for a WebSocket upgrade at `url`: worker agents get their own, larger one. */
export function wsMaxPayload(url: string, workerLimit: number): number {
  return url.startsWith('/worker/') ? workerLimit : BROWSER_WS_MAX_PAYLOAD;
}

/**
 * One `ws` server serves every socket (participants, dashboard, workers), and `ws` takes the
 * limit from its options when a connection is set up. Its `headers` event comes synchronously
 * right before that, so setting the limit there gives each connection the one of its route.
 */
export function installWsPayloadLimits(wss: WebSocketServer, workerLimit: number): void {
  wss.options.maxPayload = BROWSER_WS_MAX_PAYLOAD;
  wss.on('headers', (_headers, req) => {
    wss.options.maxPayload = wsMaxPayload(req.url ?? '', workerLimit);
  });
}
