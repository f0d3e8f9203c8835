/**
 * Mirrors the ComfyUI web frontend to the control plane when it asks (`welcome.mirrorFrontend`):
 *
 * 1. read the frontend (./frontend-snapshot.ts): over HTTP from ComfyUI (./frontend-crawl.ts), or
 *    from `--frontend-dir` (./frontend-dir.ts) plus the custom nodes' files, which only ComfyUI
 *    serves;
 * 2. `POST /worker/v1/frontend/offers` with every file's path, size and sha256;
 * 3. `PUT /worker/v1/frontend/blobs/<sha256>` for each content the control plane lacks, streamed
 *    (re-read from ComfyUI or from the folder, never held in memory);
 * 4. `POST /worker/v1/frontend/offers/<versionId>/complete` (2 to 4: ./frontend-offer.ts).
 *
 * {@link FrontendMirror} runs this in the background, one at a time, never in the way of jobs:
 * when the control plane wants it and ComfyUI is healthy. Transient HTTP failures are retried with
 * backoff; a 409 to the offer means the control plane does not want a mirror (it stops quietly).
 * After a success it keeps the offer: when asked again and ComfyUI's `index.html` and extension
 * list are unchanged, it re-sends that offer without reading the frontend again.
 */
import type { Logger } from 'pino';
import { backoffDelay, type BackoffOptions } from './backoff.js';
import { FrontendChangedError, offerFrontend } from './frontend-offer.js';
import {
  frontendFingerprint,
  readFrontend,
  type FrontendSnapshot,
  type MirrorContext,
} from './frontend-snapshot.js';

// Reading and sending live in their own modules; their names stay importable from here, where
// the agent, the template library and the tests look for them.
export { FrontendChangedError, offerFrontend, type MirrorResult } from './frontend-offer.js';
export {
  frontendFingerprint,
  readFrontend,
  type FrontendSnapshot,
  type MirrorContext,
} from './frontend-snapshot.js';

export type FrontendState = 'idle' | 'mirroring' | 'done' | 'failed' | 'not_wanted' | 'disabled' | 'absent';

export interface FrontendStatus {
  /**
   * `idle`: not asked (or waiting for ComfyUI); `mirroring`; `done`: the control plane has this
   * frontend; `failed`: the last try failed (`lastError`), another follows with backoff;
   * `not_wanted`: the control plane refused the offer; `disabled`: `mirrorFrontend: false`;
   * `absent`: ComfyUI serves nothing to mirror (the template library when its package is missing).
   */
  state: FrontendState;
  versionId: string | null;
  frontendVersion: string | null;
  files: number | null;
  lastError: string | null;
}

export interface FrontendMirrorOptions extends Omit<
  MirrorContext,
  'comfyuiVersion' | 'signal' | 'logger' | 'comfyuiUrl'
> {
  comfyuiUrl: string;
  logger: Logger;
  /** ComfyUI's version as last seen (for the offer). */
  comfyuiVersion: () => string;
  /** Between failed tries. Default 10 s doubling to 10 min. */
  failureBackoff?: BackoffOptions;
  /**
   * What is mirrored, when not the frontend (the template library, ./template-library.ts): how
   * to read it (null: ComfyUI has none), its cheap fingerprint, where to offer it, and its name
   * in log lines.
   */
  source?: MirrorSource;
}

export interface MirrorSource {
  read(ctx: MirrorContext): Promise<FrontendSnapshot | null>;
  fingerprint(ctx: MirrorContext): Promise<string | null>;
  route: '/frontend' | '/templates';
  what: string;
}

const FRONTEND_SOURCE: MirrorSource = {
  read: readFrontend,
  fingerprint: frontendFingerprint,
  route: '/frontend',
  what: 'the ComfyUI frontend',
};

/**
 * The background task: {@link setWanted} from each `welcome`, {@link setComfyHealthy} from the
 * health monitor. It mirrors when both are true, one run at a time.
 */
export class FrontendMirror {
  private wanted = false;
  private healthy = false;
  private stopped = false;
  private running: Promise<void> | null = null;
  private abort: AbortController | null = null;
  private retryTimer: NodeJS.Timeout | undefined;
  private failures = 0;
  /** Asked again while a run was going: check once more when it ends. */
  private again = false;
  /** The last offer the control plane accepted, to re-send while the frontend is unchanged. */
  private last: { snapshot: FrontendSnapshot; versionId: string } | null = null;
  private readonly st: FrontendStatus = {
    state: 'idle',
    versionId: null,
    frontendVersion: null,
    files: null,
    lastError: null,
  };

  constructor(private readonly opts: FrontendMirrorOptions) {}

  status(): FrontendStatus {
    return { ...this.st };
  }

  /** What the last `welcome` said. Each true (each new connection) checks again, cheaply. */
  setWanted(wanted: boolean): void {
    this.wanted = wanted;
    if (wanted) {
      if (this.st.state === 'not_wanted') this.st.state = 'idle';
      this.kick();
    } else {
      this.cancel();
      // Not asked any more: an earlier failure is no longer pending.
      if (this.st.state === 'failed') this.st.state = 'idle';
    }
  }

  setComfyHealthy(healthy: boolean): void {
    if (healthy === this.healthy) return;
    this.healthy = healthy;
    if (healthy) this.kick();
    else this.cancel();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.cancel();
    await this.running;
  }

  /** Resolves when no run is going (tests). */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  private cancel(): void {
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.again = false;
    this.abort?.abort();
  }

  private kick(): void {
    if (this.stopped || !this.wanted || !this.healthy) return;
    if (this.running) {
      this.again = true;
      return;
    }
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    const abort = new AbortController();
    this.abort = abort;
    this.running = this.run(abort.signal).finally(() => {
      this.running = null;
      this.abort = null;
      if (this.again) {
        this.again = false;
        this.kick();
      }
    });
  }

  private async run(signal: AbortSignal): Promise<void> {
    const o = this.opts;
    const source = o.source ?? FRONTEND_SOURCE;
    const ctx: MirrorContext = { ...o, comfyuiVersion: o.comfyuiVersion(), signal, route: source.route };
    const started = performance.now();
    const previous = this.st.state;
    this.st.state = 'mirroring';
    try {
      let snapshot: FrontendSnapshot | null = null;
      if (this.last && (await source.fingerprint(ctx)) === this.last.snapshot.fingerprint) {
        snapshot = this.last.snapshot;
      }
      const reread = snapshot === null;
      snapshot ??= await source.read(ctx);
      if (snapshot === null) {
        // Nothing to mirror (no template package installed): not a failure, nothing to retry.
        Object.assign(this.st, {
          state: 'absent',
          versionId: null,
          frontendVersion: null,
          files: null,
          lastError: null,
        });
        this.failures = 0;
        o.logger.debug(`ComfyUI serves no copy of ${source.what}; nothing to mirror`);
        return;
      }
      const result = await offerFrontend(ctx, snapshot);
      if (result.status === 'not_wanted') {
        this.st.state = 'not_wanted';
        this.st.lastError = null;
        this.wanted = false;
        o.logger.info(`the control plane does not want a copy of ${source.what}`);
        return;
      }
      this.last = { snapshot, versionId: result.versionId };
      this.failures = 0;
      Object.assign(this.st, {
        state: 'done',
        versionId: result.versionId,
        frontendVersion: result.frontendVersion,
        files: result.files,
        lastError: null,
      });
      const fields = {
        versionId: result.versionId,
        source: snapshot.source,
        frontendVersion: result.frontendVersion,
        files: result.files,
        bytes: snapshot.totalBytes,
        blobsSent: result.blobsSent,
        bytesSent: result.bytesSent,
        ms: Math.round(performance.now() - started),
      };
      if (reread || result.blobsSent > 0)
        o.logger.info(fields, `mirrored ${source.what} to the control plane`);
      else o.logger.debug(fields, `the control plane still has this copy of ${source.what}`);
    } catch (err) {
      if (signal.aborted) {
        // Stopped, no longer wanted, or ComfyUI went away: not a failure of the mirror.
        this.st.state = previous === 'done' ? 'done' : 'idle';
        return;
      }
      const message = (err as Error).message ?? String(err);
      if (err instanceof FrontendChangedError) this.last = null;
      this.failures++;
      this.st.state = 'failed';
      this.st.lastError = message;
      const backoff = o.failureBackoff ?? { baseMs: 10_000, maxMs: 600_000 };
      // A frontend that changed under us is read again soon; other failures back off.
      const delay =
        err instanceof FrontendChangedError ? backoff.baseMs : backoffDelay(this.failures - 1, backoff);
      o.logger.warn({ err: message, retryInMs: delay }, `mirroring ${source.what} failed`);
      if (!this.stopped) {
        this.retryTimer = setTimeout(() => this.kick(), delay);
        this.retryTimer.unref();
      }
    }
  }
}
