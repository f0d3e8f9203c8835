/**
 * Preparing an assigned job's prompt and queueing it in ComfyUI: output prefixes confined to the
 * user, the owner's LoRAs fetched, inputs moved into the user's part of ComfyUI's folders. Apart
 * from {@link JobRunner} because it runs once per job before ComfyUI has it, and needs only the
 * runner's ways of ending a job, not its event relay.
 */
import type { Logger } from 'pino';
import type { ComfyClient } from '../../comfy/comfy-client.js';
import { ComfyPromptError } from '../../comfy/client-errors.js';
import type { ApiPrompt, ObjectInfo } from '../../comfy/protocol.js';
import {
  extractModels,
  inputReferences,
  rewriteInputs,
  rewriteOutputPrefixes,
} from '../../comfy/prompt-tools.js';
import type { JobError } from '../../store/types.js';
import { isUnreachable } from './comfy-env.js';
import { confineReference, transferInput, type ControlPlaneHttp } from './files.js';
import type { HealthMonitor } from './health.js';
import { HttpError } from './http-stream.js';
import { LoraRefused, type LoraCache } from './lora-cache.js';
import type { AgentJob, JobTable } from './jobs.js';
import { withoutClientId } from './job-messages.js';

export interface PrepareDeps {
  comfy: ComfyClient;
  cp: ControlPlaneHttp;
  jobs: JobTable;
  health: Pick<HealthMonitor, 'suspect'>;
  log: Logger;
  /** ComfyUI's object_info, once read. */
  objectInfo: () => ObjectInfo | undefined;
  loras: Pick<LoraCache, 'prepare'>;
  /** The job cannot run: report it failed. */
  fail: (job: AgentJob, error: JobError) => void;
  /** The control plane no longer gives us the job: stop holding it without a report. */
  drop: (job: AgentJob, why: string) => void;
  /** The job may run elsewhere: hand it back to the queue. */
  giveBack: (job: AgentJob, reason: string) => Promise<void>;
}

export async function prepareAndQueue(d: PrepareDeps, job: AgentJob): Promise<void> {
  if (!d.jobs.holds(job)) return;
  const signal = job.abort.signal;
  const objectInfo = d.objectInfo();
  try {
    const ns = { user: job.user, jobId: job.jobId, ...(objectInfo ? { objectInfo } : {}) };
    let prompt = rewriteOutputPrefixes(job.prompt, ns).prompt;
    // Known loaders only: cheap, and all warmModels needs (the server computes its own list).
    job.models = extractModels(prompt);
    // The owner's own LoRAs, after the models are noted: affinity knows them by their own names.
    prompt = await d.loras.prepare(job, prompt, objectInfo, signal);
    if (!d.jobs.holds(job)) return;
    const refs = inputReferences(prompt, objectInfo);
    if (refs.length > 0) {
      // Every file reference ends up inside the user's own part of ComfyUI's folders.
      const mapping = new Map<string, string>();
      for (const ref of refs) {
        if (mapping.has(ref.value)) continue;
        if (ref.type === 'input')
          mapping.set(ref.value, await transferInput(d.comfy, d.cp, job, ref, signal));
        else mapping.set(ref.value, confineReference(ref, job.user));
        if (!d.jobs.holds(job)) return;
      }
      prompt = rewriteInputs(prompt, mapping, objectInfo).prompt;
    }
    if (!d.jobs.holds(job)) return;
    job.state = 'queued';
    const res = await d.comfy.queuePrompt(prompt as ApiPrompt, {
      promptId: job.promptId,
      extraData: withoutClientId(job.extraData),
      ...(job.front ? { front: true } : {}),
    });
    if (res.prompt_id !== job.promptId) d.jobs.rekey(job, res.prompt_id);
    if (Object.keys(res.node_errors).length > 0) {
      d.log.warn(
        { jobId: job.jobId, nodeErrors: Object.keys(res.node_errors) },
        'ComfyUI dropped some output nodes that failed validation',
      );
    }
    d.log.debug({ jobId: job.jobId, promptId: job.promptId, number: res.number }, 'job queued in ComfyUI');
  } catch (err) {
    if (!d.jobs.holds(job)) return;
    if (err instanceof ComfyPromptError) {
      d.fail(job, { reason: 'invalid_prompt', message: err.message, details: { ...err.body } });
    } else if (err instanceof LoraRefused) {
      d.fail(job, { reason: 'invalid_prompt', message: err.message });
    } else if (err instanceof HttpError) {
      // The control plane failed to hand over an input.
      if (err.status === 401 || err.status === 403 || err.status === 409)
        d.drop(job, `control plane refused input download (${err.status})`);
      else if (err.transient) await d.giveBack(job, 'input download failed; retry elsewhere');
      else
        d.fail(job, {
          reason: 'input_failed',
          message: `${err.message}${err.body ? `: ${err.body.slice(0, 500)}` : ''}`,
        });
    } else if (isUnreachable(err)) {
      d.health.suspect((err as Error).message);
      await d.giveBack(job, 'comfyui_unreachable');
    } else {
      d.log.error({ err, jobId: job.jobId }, 'preparing the job failed');
      d.fail(job, { reason: 'agent_error', message: (err as Error).message ?? String(err) });
    }
  }
}
