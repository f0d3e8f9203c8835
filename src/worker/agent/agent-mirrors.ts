/**
 * The copies the agent offers the control plane when asked: ComfyUI's web frontend and its
 * template library. Apart from {@link WorkerAgent} because both follow the same signals (asked for
 * in `welcome`, ComfyUI healthy, the agent stopping) and report the same status, and neither ever
 * holds up a job.
 */
import type { Logger } from 'pino';
import type { BackoffOptions } from './backoff.js';
import type { ControlPlaneHttp } from './files.js';
import { FrontendMirror, type FrontendStatus } from './frontend-mirror.js';
import { TEMPLATE_LIBRARY_SOURCE } from './template-library.js';

export interface AgentMirrorsOptions {
  cp: ControlPlaneHttp;
  comfyuiUrl: string;
  logger: Logger;
  /** ComfyUI's version as last seen (for the offers). */
  comfyuiVersion: () => string;
  /** Offer the frontend at all (`AgentSettings.mirrorFrontend`). */
  mirrorFrontend: boolean;
  /** Read the frontend from this folder instead of over HTTP from ComfyUI. */
  frontendDir?: string | undefined;
  /** Between failed mirror tries. */
  frontendRetry?: BackoffOptions | undefined;
  /** Offer the template library at all; default true. */
  mirrorTemplates?: boolean | undefined;
}

export class AgentMirrors {
  private readonly frontend: FrontendMirror | null;
  private readonly templates: FrontendMirror | null;

  constructor(o: AgentMirrorsOptions) {
    this.frontend = o.mirrorFrontend
      ? new FrontendMirror({
          cp: o.cp,
          comfyuiUrl: o.comfyuiUrl,
          frontendDir: o.frontendDir,
          logger: o.logger,
          comfyuiVersion: o.comfyuiVersion,
          ...(o.frontendRetry ? { failureBackoff: o.frontendRetry } : {}),
        })
      : null;
    this.templates =
      o.mirrorTemplates === false
        ? null
        : new FrontendMirror({
            cp: o.cp,
            comfyuiUrl: o.comfyuiUrl,
            logger: o.logger,
            comfyuiVersion: o.comfyuiVersion,
            source: TEMPLATE_LIBRARY_SOURCE,
            ...(o.frontendRetry ? { failureBackoff: o.frontendRetry } : {}),
          });
  }

  /** What the control plane asked for in its `welcome`. */
  setWanted(w: { mirrorFrontend?: boolean | undefined; mirrorTemplates?: boolean | undefined }): void {
    this.frontend?.setWanted(w.mirrorFrontend === true);
    this.templates?.setWanted(w.mirrorTemplates === true);
  }

  setComfyHealthy(healthy: boolean): void {
    this.frontend?.setComfyHealthy(healthy);
    this.templates?.setComfyHealthy(healthy);
  }

  async stop(): Promise<void> {
    await this.frontend?.stop();
    await this.templates?.stop();
  }

  status(): { frontend: FrontendStatus; templates: FrontendStatus } {
    return {
      frontend: this.frontend?.status() ?? disabled(),
      templates: this.templates?.status() ?? disabled(),
    };
  }
}

function disabled(): FrontendStatus {
  return { state: 'disabled', versionId: null, frontendVersion: null, files: null, lastError: null };
}
