/**
 * The one prompt check every front door uses: a participant's `/<user>/api/prompt` and the
 * instructors' `POST /api/v1/jobs` accept and refuse exactly the same prompts, with ComfyUI's own
 * error body, so a prompt that cannot run never reaches a GPU.
 */
import { apiPromptSchema } from '../api/schemas.js';
import { missingModelsError } from '../comfy/model-requirements.js';
import type { ComfyPromptErrorBody, ObjectInfo } from '../comfy/protocol.js';
import { validatePrompt } from '../comfy/validate-prompt.js';
import { type KnownWorkers, knownModelHolders, objectInfoOfAllWorkers } from '../dispatch/known-models.js';
import type { FileStore } from '../files/file-store.js';
import { safeRelativePath, userFileKey } from '../files/safe-path.js';
import { LoraLibrary } from '../loras/lora-library.js';
import { objectInfoWithOwnLoras } from '../loras/own-loras.js';
import type { BlobStore, ComfyPrompt } from '../store/types.js';
import { currentEnv } from './environment.js';
import { comfyPromptError, isObject } from './http-util.js';

/** Loader nodes whose file inputs ComfyUI checks for existence while validating. */
const FILE_LOADERS = new Set([
  'LoadImage',
  'LoadImageMask',
  'LoadImageOutput',
  'LoadAudio',
  'LoadVideo',
  'LoadLatent',
]);

/** Listing a user's LoRA names needs no limits. */
const NO_LIMITS = { maxFileBytes: 0, quotaBytes: 0 };

export type PromptCheck =
  | { ok: true; prompt: ComfyPrompt; outputs: string[]; nodeErrors: Record<string, unknown> }
  /** `body` is ComfyUI's `{error: {type, message, details, extra_info}, node_errors}`. */
  | { ok: false; status: number; body: ComfyPromptErrorBody };

/** `folder_paths.exists_annotated_filepath` over the user's own input/output/temp files. */
async function fileChecker(
  files: FileStore,
  user: string,
  prompt: unknown,
): Promise<((name: string) => boolean) | undefined> {
  if (!isObject(prompt)) return undefined;
  const needed = Object.values(prompt).some(
    (n) => isObject(n) && typeof n.class_type === 'string' && FILE_LOADERS.has(n.class_type),
  );
  if (!needed) return undefined;
  const sets = new Map<string, Set<string>>();
  for (const area of ['input', 'output', 'temp'] as const) {
    const prefix = `${userFileKey(user, area)}/`;
    sets.set(area, new Set((await files.list(prefix)).map((f) => f.key.slice(prefix.length))));
  }
  return (name: string) => {
    const m = /^(.*) \[(input|output|temp)\]$/.exec(name);
    const area = m ? m[2]! : 'input';
    try {
      return sets.get(area)!.has(safeRelativePath(m ? m[1]! : name));
    } catch {
      return false;
    }
  };
}

/**
 * Validates `prompt` for `user` as ComfyUI would: against the stored `object_info` (and the user's
 * own files for loader nodes), or, while no worker has described its ComfyUI yet, by shape only.
 * Loader lists hold every known worker's files, and a model file no known worker has is refused
 * here, in ComfyUI's words (`value_not_in_list` naming the file), not after the job reached a GPU.
 */
export async function checkPrompt(
  deps: { store: BlobStore; files: FileStore; workers?: KnownWorkers | null },
  user: string,
  prompt: unknown,
  partialExecutionTargets: string[] | null = null,
): Promise<PromptCheck> {
  const env = await currentEnv(deps.store);
  if (env) {
    const exists = await fileChecker(deps.files, user, prompt);
    const known = await knownModelHolders(deps.store, deps.workers ?? null);
    // The user's own LoRAs count as held (a worker fetches them for the job); nobody else's do,
    // and no worker's private copies (`_users/…`) are ever offered (see loras/own-loras.ts).
    const own = await new LoraLibrary(deps.files, deps.store, NO_LIMITS).names(user);
    const objectInfo = objectInfoWithOwnLoras(
      objectInfoOfAllWorkers(env.objectInfo as ObjectInfo, known),
      own,
    );
    const holders = known.length > 0 && own.length > 0 ? [...known, { models: { loras: own } }] : known;
    const result = validatePrompt(prompt, objectInfo, {
      partialExecutionTargets,
      ...(exists ? { inputFileExists: exists } : {}),
    });
    if (!result.ok) return { ok: false, status: result.status, body: result.body };
    const missing = missingModelsError(result.prompt, holders, { objectInfo, outputs: result.outputs });
    if (missing) return { ok: false, status: 400, body: missing };
    return { ok: true, prompt: result.prompt, outputs: result.outputs, nodeErrors: result.nodeErrors };
  }
  // No worker ever described its ComfyUI: check the shape only; the worker validates later.
  if (prompt === undefined) {
    return {
      ok: false,
      status: 400,
      body: comfyPromptError('no_prompt', 'No prompt provided', 'No prompt provided'),
    };
  }
  const r = apiPromptSchema.safeParse(prompt);
  if (!r.success) {
    return {
      ok: false,
      status: 400,
      body: comfyPromptError(
        'invalid_prompt',
        'Invalid prompt',
        r.error.issues[0]?.message ?? 'The prompt is malformed.',
      ),
    };
  }
  return { ok: true, prompt: r.data as ComfyPrompt, outputs: [], nodeErrors: {} };
}
