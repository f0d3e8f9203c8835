/**
 * ComfyUI's prompt validation (`execution.validate_prompt` / `validate_inputs`, v0.3.64),
 * reproduced so the control plane can answer `POST /prompt` with ComfyUI's exact 400 bodies before
 * a job ever reaches a GPU.
 *
 * What is emulated, in ComfyUI's order: the class_type / unknown-node checks (first failing node
 * wins), output-node discovery (`partial_execution_targets` honoured), then a depth-first
 * validation from every output with memoisation, so upstream errors are reported once, on the
 * node that has them, with every failing output listed in `dependent_outputs` (including
 * ComfyUI's quirk of also listing outputs that merely ran into an already failed node). Python
 * exceptions that ComfyUI would raise while validating (a link to a missing node, an index out of
 * range, an uncomparable `min`, ...) become `exception_during_validation` /
 * `exception_during_inner_validation` with CPython's exception messages. Value conversion
 * (`int()`, `float()`, `str()`, `bool()`) follows Python, and the converted values are written
 * back into the returned prompt, as ComfyUI does before it queues the prompt.
 *
 * Known differences (see also the module tests):
 * - Python iterates sets, so ComfyUI's order of outputs, of a node's inputs and hence of error
 *   items is arbitrary per process; we use prompt order and the node's `input_order`.
 * - `traceback` arrays are reconstructed (function names only, `line 0`), not Python's.
 * - JavaScript objects put integer-like keys first, so with several unknown nodes the one
 *   reported may differ from the one ComfyUI reports.
 * - A prompt that is not a JSON object (other than `[]` / `""`), or a node that is not an object,
 *   makes ComfyUI answer 500; we answer 400 `invalid_prompt` instead.
 * - A prompt of more than {@link MAX_PROMPT_NODES} nodes is refused (`invalid_prompt`, "Prompt too
 *   large"); ComfyUI has no such limit. Links are followed {@link MAX_LINK_DEPTH} deep at most, then
 *   validation fails with RecursionError, which is what ComfyUI's recursion does near that depth.
 * - JSON numbers lose their int/float distinction, so `min`/`max` are printed as floats for FLOAT
 *   inputs and as ints otherwise (right for ~98% of ComfyUI's own inputs).
 * - Custom `VALIDATE_INPUTS` code is only known for the core file loaders (LoadImage & co.); file
 *   existence comes from {@link ValidatePromptOptions.inputFileExists}.
 * - New-style `["COMBO", {options}]` inputs are checked against their options, as ComfyUI does
 *   since it added that branch (v0.3.64 itself skipped them); `checkComboOptions: false` turns
 *   that off. `*` and the V3 match type accept any link, as in current ComfyUI.
 */
import type { ComfyPromptErrorBody, NodeError, ObjectInfo, PromptErrorItem } from './protocol.js';
import { outputsFailedValidation } from './protocol.js';
import { PyException, pyStr } from './python-format.js';
import {
  PromptValidator,
  hasOwn,
  isDict,
  traceback,
  type InputValidationOptions,
  type MutableNode,
} from './validate-inputs.js';

// Node validation lives in validate-inputs.ts; these stay importable from here, as before.
export { MAX_LINK_DEPTH, typesMatch } from './validate-inputs.js';

export interface ValidatePromptOptions extends InputValidationOptions {
  /** ComfyUI's `partial_execution_targets`: only these output nodes count as outputs. */
  partialExecutionTargets?: readonly string[] | null;
}

export type ValidatePromptResult =
  | {
      ok: true;
      /** Output node ids that will run, in prompt order. */
      outputs: string[];
      /** Outputs dropped because they failed while others passed (ComfyUI still answers 200). */
      nodeErrors: Record<string, NodeError>;
      /** A copy of the prompt with ComfyUI's value conversions applied (what ComfyUI queues). */
      prompt: Record<string, { class_type: string; inputs: Record<string, unknown>; _meta?: unknown }>;
    }
  | { ok: false; status: 400; body: ComfyPromptErrorBody };

/** The most nodes a prompt may have (also checked by /api/v1/jobs). */
export const MAX_PROMPT_NODES = 5000;

function errorBody(type: string, message: string, details: string): ComfyPromptErrorBody {
  return { error: { type, message, details, extra_info: {} }, node_errors: {} };
}

/**
 * Validates an API-format prompt against `/object_info` the way ComfyUI's `POST /prompt` does.
 * `prompt` is the request's `prompt` value (`undefined` when the key is missing).
 */
export function validatePrompt(
  prompt: unknown,
  objectInfo: ObjectInfo,
  options: ValidatePromptOptions = {},
): ValidatePromptResult {
  const fail = (body: ComfyPromptErrorBody) => ({ ok: false as const, status: 400 as const, body });
  if (prompt === undefined) return fail(errorBody('no_prompt', 'No prompt provided', 'No prompt provided'));
  if (!isDict(prompt)) {
    // Python iterates an empty list or string without complaint and finds no outputs.
    if ((Array.isArray(prompt) && prompt.length === 0) || prompt === '') {
      return fail(errorBody('prompt_no_outputs', 'Prompt has no outputs', ''));
    }
    return fail(errorBody('invalid_prompt', 'Cannot execute because the prompt is not a JSON object.', ''));
  }

  const nodeCount = Object.keys(prompt).length;
  if (nodeCount > MAX_PROMPT_NODES) {
    return fail(
      errorBody(
        'invalid_prompt',
        'Prompt too large',
        `A prompt may have at most ${MAX_PROMPT_NODES} nodes; this one has ${nodeCount}.`,
      ),
    );
  }

  // A prompt is JSON (parsed from a request body): a JSON round trip copies it in about half of
  // structuredClone's time (1.8 against 3.4 µs for the model-free prompt), on every submit.
  const copy = JSON.parse(JSON.stringify(prompt)) as Record<string, MutableNode>;
  const outputs: string[] = [];
  const partial = options.partialExecutionTargets ?? null;
  for (const x of Object.keys(copy)) {
    const node = copy[x];
    if (!isDict(node) || !hasOwn(node, 'class_type')) {
      return fail(
        errorBody(
          'invalid_prompt',
          'Cannot execute because a node is missing the class_type property.',
          `Node ID '#${x}'`,
        ),
      );
    }
    const classType = node.class_type;
    const def =
      typeof classType === 'string' && hasOwn(objectInfo, classType) ? objectInfo[classType] : undefined;
    if (!def) {
      return fail(
        errorBody(
          'invalid_prompt',
          `Cannot execute because node ${pyStr(classType)} does not exist.`,
          `Node ID '#${x}'`,
        ),
      );
    }
    if (def.output_node === true && (partial === null || partial.includes(x))) outputs.push(x);
  }
  if (outputs.length === 0) return fail(errorBody('prompt_no_outputs', 'Prompt has no outputs', ''));

  const validator = new PromptValidator(copy, objectInfo, options);
  const good: string[] = [];
  const failed: [string, PromptErrorItem[]][] = [];
  // Null prototype: node ids are the client's strings, "__proto__" included.
  const nodeErrors = Object.create(null) as Record<string, NodeError>;
  for (const o of outputs) {
    let valid: boolean;
    let reasons: PromptErrorItem[];
    try {
      [valid, reasons] = validator.validateInputs(o);
    } catch (err) {
      if (!(err instanceof PyException)) throw err;
      reasons = [
        {
          type: 'exception_during_validation',
          message: 'Exception when validating node',
          details: err.message,
          extra_info: {
            exception_type: err.pyType,
            traceback: traceback(['validate_prompt', ...err.frames]),
          },
        },
      ];
      validator.validated.set(o, [false, reasons, o]);
      valid = false;
    }
    if (valid) {
      good.push(o);
      continue;
    }
    failed.push([o, reasons]);
    for (const [nodeId, [ok, rs]] of validator.validated) {
      // Nodes that failed only because something upstream failed carry no reasons: not listed.
      if (ok || rs.length === 0) continue;
      nodeErrors[nodeId] ??= {
        errors: rs,
        dependent_outputs: [],
        class_type: copy[nodeId]?.class_type as string,
      };
      nodeErrors[nodeId].dependent_outputs.push(o);
    }
  }

  if (good.length === 0) {
    return fail(
      outputsFailedValidation(
        failed.flatMap(([, rs]) => rs),
        nodeErrors,
      ),
    );
  }
  return {
    ok: true,
    outputs: good,
    nodeErrors,
    prompt: copy as Extract<ValidatePromptResult, { ok: true }>['prompt'],
  };
}
