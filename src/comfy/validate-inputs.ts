/**
 * ComfyUI's `validate_inputs` (v0.3.64) for one node and, through its links, everything upstream:
 * the per-node half of {@link validatePrompt} (validate-prompt.ts, whose header lists what is
 * emulated and the known differences). Python's semantics it needs come from python-format.ts.
 */
import type { InputType, NodeDef, ObjectInfo, PromptErrorItem } from './protocol.js';
import { getInputInfo } from './protocol.js';
import {
  PyException,
  pyBool,
  pyFloat,
  pyFloatRepr,
  pyGreater,
  pyIn,
  pyInt,
  pyIntRepr,
  pyLess,
  pyRepr,
  pyStr,
  pyTypeName,
} from './python-format.js';

/** The options of {@link validatePrompt} that reach node validation. */
export interface InputValidationOptions {
  /**
   * `folder_paths.exists_annotated_filepath` for the core file loaders (LoadImage, LoadImageMask,
   * LoadImageOutput, LoadAudio, LoadVideo, LoadLatent). `name` may carry an ` [input]` /
   * ` [output]` / ` [temp]` annotation and a subfolder. Without it every file is accepted.
   */
  inputFileExists?: (name: string, ref: { nodeId: string; classType: string; input: string }) => boolean;
  /** Check `["COMBO", {options}]` values against `options` (current ComfyUI). Default true. */
  checkComboOptions?: boolean;
}

/** The core nodes whose `VALIDATE_INPUTS` checks an input file exists, and what it says. */
const FILE_VALIDATORS: Record<string, { fn: string; input: string; what: string }> = {
  LoadImage: { fn: 'LoadImage.VALIDATE_INPUTS', input: 'image', what: 'image' },
  LoadImageMask: { fn: 'LoadImageMask.VALIDATE_INPUTS', input: 'image', what: 'image' },
  LoadImageOutput: { fn: 'LoadImage.VALIDATE_INPUTS', input: 'image', what: 'image' },
  LoadLatent: { fn: 'LoadLatent.VALIDATE_INPUTS', input: 'latent', what: 'latent' },
  LoadAudio: { fn: 'LoadAudio.VALIDATE_INPUTS', input: 'audio', what: 'audio' },
  LoadVideo: { fn: 'LoadVideo.validate_inputs', input: 'file', what: 'video' },
};

/**
 * How deep validation follows links before it stops with Python's RecursionError, as ComfyUI's
 * recursive `validate_inputs` does a little below Python's default limit of 1000 frames.
 */
export const MAX_LINK_DEPTH = 990;

/** `comfy_api` V3 match-type io type: accepted like `*` by current ComfyUI. */
const MATCH_TYPE = 'COMFY_MATCHTYPE_V3';

export type Validated = [valid: boolean, reasons: PromptErrorItem[], nodeId: string];
export type MutableNode = { class_type: unknown; inputs?: unknown; [k: string]: unknown };

export const hasOwn = (o: object, k: string) => Object.prototype.hasOwnProperty.call(o, k);
export const isDict = (v: unknown): v is Record<string, unknown> =>
  v !== null && typeof v === 'object' && !Array.isArray(v);

/** Where a reconstructed traceback frame lives, for a readable `File "…"` line. */
const FRAME_FILES: Record<string, string> = {
  validate_prompt: 'execution.py',
  validate_inputs: 'execution.py',
  _async_map_node_over_list: 'execution.py',
  process_inputs: 'execution.py',
  exists_annotated_filepath: 'folder_paths.py',
  annotated_filepath: 'folder_paths.py',
};

export function traceback(frames: string[]): string[] {
  return frames.map(
    (fn) =>
      `  File "${FRAME_FILES[fn] ?? 'nodes.py'}", line 0, in ${fn.split('.').pop()}\n    (traceback reconstructed by comfy-multi)\n`,
  );
}

/** Python `x in container` for the `inputs` value, which is a dict unless the prompt is odd. */
function pyContains(container: unknown, key: string): boolean {
  if (isDict(container)) return hasOwn(container, key);
  if (Array.isArray(container)) return pyIn(key, container);
  if (typeof container === 'string') return container.includes(key);
  throw new PyException('TypeError', `argument of type '${pyTypeName(container)}' is not iterable`);
}

function pyGetItem(container: unknown, key: string): unknown {
  if (isDict(container)) return container[key];
  if (Array.isArray(container))
    throw new PyException('TypeError', 'list indices must be integers or slices, not str');
  throw new PyException('TypeError', "string indices must be integers, not 'str'");
}

/** Python `seq[index]` for RETURN_TYPES (a tuple for V1 nodes, a list for V3 nodes). */
function pyIndex(seq: readonly unknown[], index: unknown, seqName: 'tuple' | 'list'): unknown {
  const t = pyTypeName(index);
  if (t !== 'int' && t !== 'bool') {
    throw new PyException('TypeError', `${seqName} indices must be integers or slices, not ${t}`);
  }
  let i = Number(index);
  if (i < 0) i += seq.length;
  if (i < 0 || i >= seq.length) throw new PyException('IndexError', `${seqName} index out of range`);
  return seq[i];
}

/** ComfyUI's `validate_node_input` (non-strict), with `*`, match types and combo outputs. */
export function typesMatch(received: unknown, input: unknown): boolean {
  if (pyEqualsLoose(received, input)) return true;
  if (received === '*' || input === '*' || received === MATCH_TYPE || input === MATCH_TYPE) return true;
  if (Array.isArray(received) && input === 'COMBO') return true;
  if (typeof received !== 'string' || typeof input !== 'string') return false;
  const r = new Set(received.split(',').map((t) => t.trim()));
  const i = new Set(input.split(',').map((t) => t.trim()));
  if (r.has('*') || i.has('*')) return true;
  for (const t of r) if (i.has(t)) return true;
  return false;
}

function pyEqualsLoose(a: unknown, b: unknown): boolean {
  if (typeof a === 'string' || typeof b === 'string') return a === b;
  return pyIn(a, [b]);
}

/** Required inputs then optional ones, in the node's declared order. */
function validInputNames(def: NodeDef): string[] {
  const names: string[] = [];
  const seen = new Set<string>();
  const add = (n: string) => {
    if (!seen.has(n)) {
      seen.add(n);
      names.push(n);
    }
  };
  for (const cat of ['required', 'optional'] as const) {
    const specs = def.input[cat];
    if (!specs) continue;
    for (const n of def.input_order?.[cat] ?? []) if (hasOwn(specs, n)) add(n);
    for (const n of Object.keys(specs)) add(n);
  }
  return names;
}

export class PromptValidator {
  readonly validated = new Map<string, Validated>();
  private readonly inProgress = new Set<string>();

  constructor(
    private readonly prompt: Record<string, MutableNode>,
    private readonly objectInfo: ObjectInfo,
    private readonly options: InputValidationOptions,
  ) {}

  private def(classType: unknown): NodeDef {
    return this.objectInfo[classType as string] as NodeDef;
  }

  /** `prompt[o_id]` with Python's exceptions for a missing or unhashable key. */
  private linkedNode(oId: unknown): [string, MutableNode] {
    const t = pyTypeName(oId);
    if (t === 'list' || t === 'dict') throw new PyException('TypeError', `unhashable type: '${t}'`);
    if (typeof oId === 'string' && hasOwn(this.prompt, oId)) return [oId, this.prompt[oId] as MutableNode];
    throw new PyException('KeyError', pyRepr(oId));
  }

  validateInputs(uniqueId: string): Validated {
    const done = this.validated.get(uniqueId);
    if (done) return done;
    // A cycle recurses in Python until RecursionError; every frame on the cycle is later
    // overwritten with its own result, which is what raising at re-entry reproduces.
    if (this.inProgress.has(uniqueId))
      throw new PyException('RecursionError', 'maximum recursion depth exceeded');
    // A long chain does the same in Python (its default limit is 1000 frames); here it also keeps
    // the walk far from JavaScript's own stack limit, however the prompt is built.
    if (this.inProgress.size >= MAX_LINK_DEPTH)
      throw new PyException('RecursionError', 'maximum recursion depth exceeded');
    this.inProgress.add(uniqueId);
    try {
      return this.validateNode(uniqueId);
    } catch (err) {
      if (err instanceof PyException) err.frames.unshift('validate_inputs');
      throw err;
    } finally {
      this.inProgress.delete(uniqueId);
    }
  }

  private validateNode(uniqueId: string): Validated {
    const node = this.prompt[uniqueId] as MutableNode;
    if (!hasOwn(node, 'inputs')) throw new PyException('KeyError', "'inputs'");
    const inputs = node.inputs;
    const classType = node.class_type as string;
    const def = this.def(classType);
    const fileValidator = FILE_VALIDATORS[classType];
    const validateFunctionInputs = fileValidator ? [fileValidator.input] : [];
    const checkCombo = this.options.checkComboOptions ?? true;

    const errors: PromptErrorItem[] = [];
    let valid = true;

    for (const x of validInputNames(def)) {
      const info = getInputInfo(def, x);
      if (!info) continue;
      const inputType: InputType = info.type;
      const extraInfo = (isDict(info.options) ? info.options : {}) as Record<string, unknown>;
      if (!pyContains(inputs, x)) {
        if (info.category === 'required') {
          errors.push({
            type: 'required_input_missing',
            message: 'Required input is missing',
            details: x,
            extra_info: { input_name: x },
          });
        }
        continue;
      }

      let val = pyGetItem(inputs, x);
      const inputConfig = [inputType, extraInfo];
      if (Array.isArray(val)) {
        if (val.length !== 2) {
          errors.push({
            type: 'bad_linked_input',
            message: 'Bad linked input, must be a length-2 list of [node_id, slot_index]',
            details: x,
            extra_info: { input_name: x, input_config: inputConfig, received_value: val },
          });
          continue;
        }
        const [oId, source] = this.linkedNode(val[0]);
        const sourceDef = this.def(source.class_type);
        const receivedType = pyIndex(
          sourceDef.output,
          val[1],
          sourceDef.api_node !== undefined ? 'list' : 'tuple',
        );
        if (!typesMatch(receivedType, inputType)) {
          errors.push({
            type: 'return_type_mismatch',
            message: 'Return type mismatch between linked nodes',
            details: `${x}, received_type(${pyStr(receivedType)}) mismatch input_type(${pyStr(inputType)})`,
            extra_info: {
              input_name: x,
              input_config: inputConfig,
              received_type: receivedType,
              linked_node: val,
            },
          });
          continue;
        }
        try {
          const r = this.validateInputs(oId);
          if (!r[0]) valid = false;
        } catch (err) {
          if (!(err instanceof PyException)) throw err;
          valid = false;
          this.validated.set(oId, [
            false,
            [
              {
                type: 'exception_during_inner_validation',
                message: 'Exception when validating inner node',
                details: err.message,
                extra_info: {
                  input_name: x,
                  input_config: inputConfig,
                  exception_message: err.message,
                  exception_type: err.pyType,
                  traceback: traceback(['validate_inputs', ...err.frames]),
                  linked_node: val,
                },
              },
            ],
            oId,
          ]);
        }
        continue;
      }

      // A literal. `str(val)` below prints floats produced by float() with their `.0`.
      let isFloat = false;
      try {
        if (isDict(val) && hasOwn(val, '__value__')) {
          val = val.__value__;
          (inputs as Record<string, unknown>)[x] = val;
        }
        if (inputType === 'INT') val = pyInt(val);
        if (inputType === 'FLOAT') {
          val = pyFloat(val);
          isFloat = true;
        }
        if (inputType === 'STRING') val = pyStr(val);
        if (inputType === 'BOOLEAN') val = pyBool(val);
        if (
          inputType === 'INT' ||
          inputType === 'FLOAT' ||
          inputType === 'STRING' ||
          inputType === 'BOOLEAN'
        ) {
          (inputs as Record<string, unknown>)[x] = val;
        }
      } catch (err) {
        if (!(err instanceof PyException)) throw err;
        errors.push({
          type: 'invalid_input_type',
          message: `Failed to convert an input value to a ${pyStr(inputType)} value`,
          details: `${x}, ${pyStr(val)}, ${err.message}`,
          extra_info: {
            input_name: x,
            input_config: inputConfig,
            received_value: val,
            exception_message: err.message,
          },
        });
        continue;
      }

      if (validateFunctionInputs.includes(x)) continue;
      const show = (v: unknown) => (isFloat && typeof v === 'number' ? pyFloatRepr(v) : pyStr(v));
      const showLimit = (v: unknown) =>
        typeof v === 'number' && (inputType === 'FLOAT' || !Number.isInteger(v))
          ? pyFloatRepr(v)
          : typeof v === 'number'
            ? pyIntRepr(v)
            : pyStr(v);
      if (hasOwn(extraInfo, 'min') && pyLess(val, extraInfo.min)) {
        errors.push({
          type: 'value_smaller_than_min',
          message: `Value ${show(val)} smaller than min of ${showLimit(extraInfo.min)}`,
          details: x,
          extra_info: { input_name: x, input_config: inputConfig, received_value: val },
        });
        continue;
      }
      if (hasOwn(extraInfo, 'max') && pyGreater(val, extraInfo.max)) {
        errors.push({
          type: 'value_bigger_than_max',
          message: `Value ${show(val)} bigger than max of ${showLimit(extraInfo.max)}`,
          details: x,
          extra_info: { input_name: x, input_config: inputConfig, received_value: val },
        });
        continue;
      }
      if (Array.isArray(inputType) || (checkCombo && inputType === 'COMBO')) {
        const comboOptions: unknown[] = Array.isArray(inputType)
          ? inputType
          : Array.isArray(extraInfo.options)
            ? extraInfo.options
            : [];
        if (!pyIn(val, comboOptions)) {
          const big = comboOptions.length > 20;
          errors.push({
            type: 'value_not_in_list',
            message: 'Value not in list',
            details: `${x}: '${show(val)}' not in ${big ? `(list of length ${comboOptions.length})` : pyStr(comboOptions)}`,
            extra_info: { input_name: x, input_config: big ? null : inputConfig, received_value: val },
          });
          continue;
        }
      }
    }

    if (fileValidator) this.runFileValidator(uniqueId, classType, inputs, fileValidator, errors);

    const ret: Validated = errors.length > 0 || !valid ? [false, errors, uniqueId] : [true, [], uniqueId];
    this.validated.set(uniqueId, ret);
    return ret;
  }

  /** The loader's `VALIDATE_INPUTS(image)`: the file must exist (per the caller's hook). */
  private runFileValidator(
    nodeId: string,
    classType: string,
    inputs: unknown,
    v: { fn: string; input: string; what: string },
    errors: PromptErrorItem[],
  ): void {
    const frames = ['_async_map_node_over_list', 'process_inputs'];
    // get_input_data: only literal inputs of a dict reach the function; links arrive as None.
    if (!isDict(inputs) || !hasOwn(inputs, v.input)) {
      throw new PyException(
        'TypeError',
        `${v.fn}() missing 1 required positional argument: '${v.input}'`,
        frames,
      );
    }
    const raw = inputs[v.input];
    const value =
      Array.isArray(raw) && raw.length === 2 && typeof raw[0] === 'string' && typeof raw[1] === 'number'
        ? null
        : raw;
    if (typeof value !== 'string') {
      throw new PyException('AttributeError', `'${pyTypeName(value)}' object has no attribute 'endswith'`, [
        ...frames,
        v.fn,
        'exists_annotated_filepath',
        'annotated_filepath',
      ]);
    }
    const exists = this.options.inputFileExists?.(value, { nodeId, classType, input: v.input }) ?? true;
    if (!exists) {
      errors.push({
        type: 'custom_validation_failed',
        message: 'Custom validation failed for node',
        details: `${v.input} - Invalid ${v.what} file: ${value}`,
        extra_info: { input_name: v.input },
      });
    }
  }
}
