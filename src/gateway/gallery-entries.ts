import { Readable } from 'node:stream';
import type { Job, JobStatus, JobStore } from '../store/types.js';
import { historyOutputs, inHistory } from './history-shape.js';
import { userJobs } from './queue-routes.js';
import type { ZipEntry } from './zip.js';

/**
 * What the gallery and its zip show besides files: the non-file entries of the participant's jobs
 * (a node's `text`, `animated`, a custom node's values), from the same job records history reads.
 */

const TERMINAL: JobStatus[] = ['completed', 'failed', 'cancelled'];

/** The user's jobs as ComfyUI's history lists them: oldest finished first. */
export async function historyJobs(store: JobStore, user: string): Promise<Job[]> {
  const jobs = (await userJobs(store, user, TERMINAL)).filter(inHistory);
  return jobs.sort((a, b) => (a.finishedAt ?? 0) - (b.finishedAt ?? 0) || a.seq - b.seq);
}

/** One non-file output entry shown as a card (a `text` string, a custom node's value). */
export interface GalleryNote {
  /** The node's ui key: `text`, or a custom node's own. */
  key: string;
  text: string;
  /** When its job finished (ms), to place it among the files. */
  at: number;
}

export interface GalleryExtras {
  notes: GalleryNote[];
  /** Output paths (under the user's output folder) of nodes that reported `animated: true`. */
  animated: Set<string>;
}

export function galleryExtras(jobs: readonly Job[]): GalleryExtras {
  const notes: GalleryNote[] = [];
  const animated = new Set<string>();
  for (const job of jobs) {
    const at = job.finishedAt ?? job.createdAt;
    for (const o of job.outputs) {
      if (o.value === undefined) continue;
      if (o.kind === 'animated') {
        // ComfyUI's `animated` is one flag per node (SaveAnimatedWEBP/PNG): it covers the node's files.
        if (o.value !== true) continue;
        for (const f of job.outputs)
          if (f.nodeId === o.nodeId && f.value === undefined && f.type === 'output')
            animated.add(f.subfolder ? `${f.subfolder}/${f.filename}` : f.filename);
        continue;
      }
      notes.push({ key: o.kind, text: typeof o.value === 'string' ? o.value : JSON.stringify(o.value), at });
    }
  }
  return { notes, animated };
}

/**
 * `outputs.json` of the zip: job id → that job's outputs exactly as `/history` shows them (node by
 * node, every key and entry), for the jobs that have any; none when no job has. Serialised when the
 * zip reaches it, not before.
 */
export function outputsJsonEntry(name: string, jobs: readonly Job[]): ZipEntry | null {
  const withOutputs = jobs.filter((j) => j.outputs.length > 0);
  if (!withOutputs.length) return null;
  return {
    name,
    mtime: new Date(Math.max(...withOutputs.map((j) => j.finishedAt ?? j.createdAt))),
    open: () => {
      const out: Record<string, unknown> = {};
      for (const job of withOutputs) out[job.id] = historyOutputs(job);
      return Readable.from([Buffer.from(`${JSON.stringify(out, null, 2)}\n`, 'utf8')]);
    },
  };
}
