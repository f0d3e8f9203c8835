/**
 * `POST /prompt` validation, reproducing ComfyUI's validate_prompt/validate_inputs: the same
 * error types, messages, details and node_errors bookkeeping (including its quirks, e.g. every
 * failing output is appended to the dependent_outputs of every node that failed so far).
 * It also converts widget values in place (`"64"` → 64) as ComfyUI does before queueing.
 */
import type { NodeCatalog, InputSpec, NodeDef } from './object-info.js';
import { PyError, fakeTraceback, pyBool, pyEquals, pyFloat, pyInt, pyRepr, pyStr } from './python-compat.js';
import type { ApiPrompt, NodeErrorEntry, NodeId, PromptError } from './types.js';

export interface ValidationContext {
  catalog: NodeCatalog;
  /** LoadImage's custom validation: does this (possibly annotated) input file exist? */
  inputFileExists(name: string): boolean;
}

export type ValidationResult =
  | { ok: true; outputs: NodeId[]; nodeErrors: Record<NodeId, NodeErrorEntry> }
  | { ok: false; error: PromptError; nodeErrors: Record<NodeId, NodeErrorEntry> };

type Verdict = { valid: boolean; errors: PromptError[] };

/** Nodes with a VALIDATE_INPUTS that replaces the combo/min/max checks for these inputs. */
const CUSTOM_VALIDATED: Record<string, string[]> = { LoadImage: ['image'], LoadImageMask: ['image'] };

function promptError(type: string, message: string, details: string, extra: Record<string, unknown> = {}) {
  return { type, message, details, extra_info: extra };
}

function isDict(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Reads `prompt[id][key]` the way Python subscripting fails: KeyError / TypeError. */
function pyGet(obj: unknown, key: string): unknown {
  if (!isDict(obj))
    throw new PyError('TypeError', `'${obj === null ? 'NoneType' : typeof obj}' object is not subscriptable`);
  if (!Object.hasOwn(obj, key)) throw new PyError('KeyError', pyRepr(key));
  return obj[key];
}

function inputSpecs(def: NodeDef): Array<[string, InputSpec, 'required' | 'optional']> {
  const out: Array<[string, InputSpec, 'required' | 'optional']> = [];
  for (const category of ['required', 'optional'] as const) {
    for (const [name, spec] of Object.entries(def.input[category] ?? {})) {
      out.push([name, (Array.isArray(spec) ? spec : [spec]) as InputSpec, category]);
    }
  }
  return out;
}

/** ComfyUI's validate_node_input: equal, `*` on either side, or overlapping `A,B` unions. */
function typesCompatible(received: unknown, expected: unknown): boolean {
  if (received === expected || received === '*' || expected === '*') return true;
  if (typeof received !== 'string' || typeof expected !== 'string') return false;
  const want = new Set(expected.split(',').map((t) => t.trim()));
  return received.split(',').some((t) => want.has(t.trim()));
}

/** Converts a widget value like ComfyUI (int()/float()/str()/bool()); throws PyError on failure. */
function convertWidget(type: unknown, val: unknown): unknown {
  if (type === 'INT') return pyInt(val);
  if (type === 'FLOAT') return pyFloat(val);
  if (type === 'STRING') return pyStr(val);
  if (type === 'BOOLEAN') return pyBool(val);
  return val;
}

function formatNumber(type: unknown, n: unknown): string {
  if (type === 'FLOAT' && typeof n === 'number' && Number.isInteger(n)) return `${n}.0`;
  return pyStr(n);
}

class Validator {
  readonly validated = new Map<NodeId, Verdict>();

  constructor(
    private readonly prompt: ApiPrompt,
    private readonly ctx: ValidationContext,
  ) {}

  /** validate_inputs(): may throw (PyError) like ComfyUI does for broken links. */
  validateNode(id: NodeId): Verdict {
    const known = this.validated.get(id);
    if (known) return known;
    const node = pyGet(this.prompt, id);
    const inputs = pyGet(node, 'inputs') as Record<string, unknown>;
    const classType = pyGet(node, 'class_type') as string;
    const def = this.ctx.catalog.get(classType)!;
    const custom = CUSTOM_VALIDATED[classType] ?? [];
    const errors: PromptError[] = [];
    let valid = true;

    for (const [name, spec, category] of inputSpecs(def)) {
      const info = [spec[0], spec[1] ?? {}];
      if (!Object.hasOwn(inputs, name)) {
        if (category === 'required') {
          errors.push(
            promptError('required_input_missing', 'Required input is missing', name, { input_name: name }),
          );
        }
        continue;
      }
      const val = inputs[name];
      if (Array.isArray(val)) {
        const linkOk = this.checkLink(name, val, info, errors);
        if (!linkOk) valid = false;
        continue;
      }
      const error = this.checkWidget(inputs, name, info, custom.includes(name));
      if (error) errors.push(error);
    }
    errors.push(...this.customValidation(classType, inputs));

    const verdict = { valid: valid && errors.length === 0, errors };
    this.validated.set(id, verdict);
    return verdict;
  }

  /** A linked input: shape, output type, then the upstream node (recursively). */
  private checkLink(name: string, val: unknown[], info: unknown[], errors: PromptError[]): boolean {
    if (val.length !== 2) {
      errors.push(
        promptError(
          'bad_linked_input',
          'Bad linked input, must be a length-2 list of [node_id, slot_index]',
          name,
          {
            input_name: name,
            input_config: info,
            received_value: val,
          },
        ),
      );
      return true;
    }
    const [upstreamId, slot] = val as [string, unknown];
    const upstream = pyGet(this.prompt, String(upstreamId));
    const upstreamDef = this.ctx.catalog.get(pyGet(upstream, 'class_type') as string);
    if (typeof slot !== 'number' || !Number.isInteger(slot)) {
      throw new PyError(
        'TypeError',
        `tuple indices must be integers or slices, not ${typeof slot === 'number' ? 'float' : 'str'}`,
      );
    }
    const outputs = upstreamDef?.output ?? [];
    const receivedType = outputs[slot < 0 ? outputs.length + slot : slot];
    if (receivedType === undefined) throw new PyError('IndexError', 'tuple index out of range');
    if (!typesCompatible(receivedType, info[0])) {
      errors.push(
        promptError(
          'return_type_mismatch',
          'Return type mismatch between linked nodes',
          `${name}, received_type(${pyStr(receivedType)}) mismatch input_type(${pyStr(info[0])})`,
          { input_name: name, input_config: info, received_type: receivedType, linked_node: val },
        ),
      );
      return true;
    }
    try {
      return this.validateNode(String(upstreamId)).valid;
    } catch (ex) {
      const err = ex instanceof PyError ? ex : new PyError('Exception', String(ex));
      this.validated.set(String(upstreamId), {
        valid: false,
        errors: [
          promptError(
            'exception_during_inner_validation',
            'Exception when validating inner node',
            err.message,
            {
              input_name: name,
              input_config: info,
              exception_message: err.message,
              exception_type: err.pyType,
              traceback: fakeTraceback([['execution.py', 0, 'validate_inputs']]),
              linked_node: val,
            },
          ),
        ],
      });
      return false;
    }
  }

  /** A widget value: conversion, min/max and combo membership. Writes the converted value back. */
  private checkWidget(
    inputs: Record<string, unknown>,
    name: string,
    info: unknown[],
    customValidated: boolean,
  ): PromptError | null {
    const [type, extra] = info as [unknown, Record<string, unknown>];
    let val = inputs[name];
    if (isDict(val) && Object.hasOwn(val, '__value__')) {
      val = val.__value__;
      inputs[name] = val;
    }
    try {
      val = convertWidget(type, val);
      inputs[name] = val;
    } catch (ex) {
      const msg = ex instanceof Error ? ex.message : String(ex);
      return promptError(
        'invalid_input_type',
        `Failed to convert an input value to a ${pyStr(type)} value`,
        `${name}, ${pyStr(val)}, ${msg}`,
        {
          input_name: name,
          input_config: info,
          received_value: val,
          exception_message: msg,
        },
      );
    }
    if (customValidated) return null;
    const extraInfo = { input_name: name, input_config: info, received_value: val };
    if (typeof extra.min === 'number' && (val as number) < extra.min) {
      return promptError(
        'value_smaller_than_min',
        `Value ${formatNumber(type, val)} smaller than min of ${formatNumber(type, extra.min)}`,
        name,
        extraInfo,
      );
    }
    if (typeof extra.max === 'number' && (val as number) > extra.max) {
      return promptError(
        'value_bigger_than_max',
        `Value ${formatNumber(type, val)} bigger than max of ${formatNumber(type, extra.max)}`,
        name,
        extraInfo,
      );
    }
    if (Array.isArray(type) && !type.some((option) => pyEquals(option, val))) {
      const long = type.length > 20;
      const listInfo = long ? `(list of length ${type.length})` : pyRepr(type);
      return promptError(
        'value_not_in_list',
        'Value not in list',
        `${name}: '${pyStr(val)}' not in ${listInfo}`,
        {
          ...extraInfo,
          input_config: long ? null : info,
        },
      );
    }
    return null;
  }

  /** VALIDATE_INPUTS of the few nodes the stand-in knows to have one. */
  private customValidation(classType: string, inputs: Record<string, unknown>): PromptError[] {
    if (!CUSTOM_VALIDATED[classType]) return [];
    const image = inputs.image;
    if (typeof image === 'string' && this.ctx.inputFileExists(image)) return [];
    return [
      promptError(
        'custom_validation_failed',
        'Custom validation failed for node',
        `image - Invalid image file: ${pyStr(image)}`,
        {
          input_name: 'image',
        },
      ),
    ];
  }
}

/** Structural checks done before any input validation; the first problem wins. */
function findOutputs(
  prompt: ApiPrompt,
  ctx: ValidationContext,
  targets: NodeId[] | null,
): PromptError | NodeId[] {
  const outputs: NodeId[] = [];
  for (const [id, node] of Object.entries(prompt)) {
    if (!isDict(node) || !Object.hasOwn(node, 'class_type')) {
      return promptError(
        'invalid_prompt',
        'Cannot execute because a node is missing the class_type property.',
        `Node ID '#${id}'`,
      );
    }
    const classType = node.class_type;
    if (typeof classType !== 'string' || !ctx.catalog.has(classType)) {
      return promptError(
        'invalid_prompt',
        `Cannot execute because node ${pyStr(classType)} does not exist.`,
        `Node ID '#${id}'`,
      );
    }
    if (ctx.catalog.isOutputNode(classType) && (targets === null || targets.includes(id))) outputs.push(id);
  }
  if (outputs.length === 0) return promptError('prompt_no_outputs', 'Prompt has no outputs', '');
  return outputs;
}

/**
 * ComfyUI's validate_prompt. Throws only where ComfyUI's handler would crash (→ HTTP 500),
 * e.g. when `prompt` is not an object.
 */
export function validatePrompt(
  prompt: unknown,
  ctx: ValidationContext,
  targets: NodeId[] | null = null,
): ValidationResult {
  if (!isDict(prompt)) throw new PyError('AttributeError', 'prompt is not a dict');
  const apiPrompt = prompt as unknown as ApiPrompt;
  const found = findOutputs(apiPrompt, ctx, targets);
  if (!Array.isArray(found)) return { ok: false, error: found, nodeErrors: {} };

  const validator = new Validator(apiPrompt, ctx);
  const good: NodeId[] = [];
  const failed: Array<[NodeId, PromptError[]]> = [];
  const nodeErrors: Record<NodeId, NodeErrorEntry> = {};

  for (const output of found) {
    let verdict: Verdict;
    try {
      verdict = validator.validateNode(output);
    } catch (ex) {
      const err = ex instanceof PyError ? ex : new PyError('Exception', String(ex));
      verdict = {
        valid: false,
        errors: [
          promptError('exception_during_validation', 'Exception when validating node', err.message, {
            exception_type: err.pyType,
            traceback: fakeTraceback([
              ['execution.py', 0, 'validate_prompt'],
              ['execution.py', 0, 'validate_inputs'],
            ]),
          }),
        ],
      };
      validator.validated.set(output, verdict);
    }
    if (verdict.valid) {
      good.push(output);
      continue;
    }
    failed.push([output, verdict.errors]);
    for (const [id, v] of validator.validated) {
      if (v.valid || v.errors.length === 0) continue;
      nodeErrors[id] ??= { errors: v.errors, dependent_outputs: [], class_type: apiPrompt[id]!.class_type };
      nodeErrors[id].dependent_outputs.push(output);
    }
  }

  if (good.length === 0) {
    const details = failed
      .flatMap(([, errors]) => errors.map((e) => `${e.message}: ${e.details}`))
      .join('\n');
    return {
      ok: false,
      error: promptError('prompt_outputs_failed_validation', 'Prompt outputs failed validation', details),
      nodeErrors,
    };
  }
  return { ok: true, outputs: good, nodeErrors };
}
