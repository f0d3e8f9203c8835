/**
 * Moving a job's outputs from ComfyUI to the control plane. An upload starts the moment ComfyUI's
 * `executed` names the file (not when the whole prompt is done), at most `concurrency` per job at
 * a time, each streamed from ComfyUI's `/view` straight into the control plane's PUT.
 */
import type { Logger } from 'pino';
import type { ComfyClient } from '../../comfy/comfy-client.js';
import type { JobOutput } from '../../store/types.js';
import { backoffDelay } from './backoff.js';
import { transferOutput, type ControlPlaneHttp } from './files.js';
import { HttpError } from './http-stream.js';
import { outputKey, type AgentJob } from './jobs.js';

export interface OutputUploadsDeps {
  comfy: ComfyClient;
  cp: ControlPlaneHttp;
  log: Logger;
  /** Outputs of one job uploaded at the same time. */
  concurrency: number;
  /** Tries per output before the job fails with `upload_failed`. */
  attempts: number;
  /** ComfyUI's output folder on this machine (`--output-dir`): outputs are read from it, not `/view`. */
  outputDir?: string | null;
}

/** Per job: uploads running, and starts waiting for a free slot. */
interface Slots {
  active: number;
  waiting: (() => void)[];
}

export class OutputUploads {
  private readonly slots = new WeakMap<AgentJob, Slots>();

  constructor(private readonly d: OutputUploadsDeps) {}

  /** The upload of `out` (started now unless it already was): resolves with what was stored. */
  start(job: AgentJob, out: JobOutput): Promise<JobOutput> {
    const key = outputKey(out);
    let p = job.uploads.get(key);
    if (!p) {
      p = this.limited(job, () => this.uploadOne(job, out));
      // The caller that awaits it handles a failure; an upload nobody awaits must not crash us.
      p.catch(() => undefined);
      job.uploads.set(key, p);
    }
    return p;
  }

  /** Every output the job has reported, uploaded, in the order ComfyUI reported them. */
  all(job: AgentJob): Promise<JobOutput[]> {
    // Non-file entries (`animated`, `text`, ...) are reported as they are.
    return Promise.all(
      [...job.outputs.values()].map((o) => (o.value === undefined ? this.start(job, o) : Promise.resolve(o))),
    );
  }

  private async limited<T>(job: AgentJob, task: () => Promise<T>): Promise<T> {
    let s = this.slots.get(job);
    if (!s) this.slots.set(job, (s = { active: 0, waiting: [] }));
    const slots = s;
    if (slots.active >= Math.max(1, this.d.concurrency))
      await new Promise<void>((r) => slots.waiting.push(r));
    slots.active += 1;
    try {
      return await task();
    } finally {
      slots.active -= 1;
      slots.waiting.shift()?.();
    }
  }

  private async uploadOne(job: AgentJob, out: JobOutput): Promise<JobOutput> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await transferOutput(this.d.comfy, this.d.cp, job, out, job.abort.signal, this.d.outputDir);
      } catch (err) {
        // Only the control plane's side is retried here; a ComfyUI failure is handled by the caller.
        // A control plane that is away (restarting, no answer, 502-504) is never the job's fault:
        // keep trying for as long as we hold the job, so a finished job is not failed or re-run.
        const away =
          err instanceof HttpError && (err.status === 0 || (err.status >= 502 && err.status <= 504));
        const retry =
          !job.abort.signal.aborted &&
          err instanceof HttpError &&
          err.transient &&
          (away || attempt + 1 < this.d.attempts);
        if (!retry) throw err;
        const delay = backoffDelay(Math.min(attempt, 20), { baseMs: 200, maxMs: 5000 });
        this.d.log.warn(
          { jobId: job.jobId, file: out.filename, err: (err as Error).message, retryInMs: delay },
          'output upload failed; retrying',
        );
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }
}
