import { z } from 'zod';
import { JOB_STATUSES, PRIORITIES, QUEUE_MODES } from '../store/types.js';
import { userNameSchema } from '../auth/user-names.js';
import { MAX_PROMPT_NODES } from '../comfy/validate-prompt.js';

/** A ComfyUI API-format prompt: node id → {class_type, inputs}. Deeper checks happen in src/comfy. */
export const apiPromptSchema = z
  .record(
    z.string().min(1).max(64),
    z.looseObject({
      class_type: z.string().min(1).max(256),
      inputs: z.record(z.string(), z.unknown()),
    }),
  )
  .refine((p) => Object.keys(p).length > 0, 'a prompt needs at least one node')
  .refine(
    (p) => Object.keys(p).length <= MAX_PROMPT_NODES,
    `a prompt may have at most ${MAX_PROMPT_NODES} nodes`,
  );

export const createJobBody = z.strictObject({
  user: userNameSchema,
  /** Checked by `checkPrompt` exactly as `/<user>/api/prompt` checks it (ComfyUI's error body). */
  prompt: z.unknown(),
  priority: z.enum(PRIORITIES).optional(),
  front: z.boolean().optional(),
  metadata: z.record(z.string(), z.unknown()).optional(),
});

export const patchJobBody = z
  .strictObject({ priority: z.enum(PRIORITIES).optional(), front: z.literal(true).optional() })
  .refine((b) => b.priority !== undefined || b.front !== undefined, 'give priority and/or front: true');

const statusList = z
  .string()
  .transform((s) => s.split(',').map((x) => x.trim()))
  .pipe(z.array(z.enum(JOB_STATUSES)).min(1));

export const listJobsQuery = z.strictObject({
  user: userNameSchema.optional(),
  status: statusList.optional(),
  limit: z.coerce.number().int().min(1).max(500).default(50),
  cursor: z.string().max(200).optional(),
  order: z.enum(['asc', 'desc']).default('desc'),
});

export const jobIdParams = z.strictObject({ id: z.string().min(1).max(128) });

export const putQueueBody = z
  .strictObject({
    mode: z.enum(QUEUE_MODES).optional(),
    paused: z.boolean().optional(),
    limits: z
      .strictObject({
        maxPendingPerUser: z.number().int().min(1).max(100_000).optional(),
        maxRunningPerUser: z.number().int().min(1).max(1000).optional(),
      })
      .optional(),
  })
  .refine((b) => Object.keys(b).length > 0, 'give mode, paused and/or limits');
