/**
 * ComfyUI's `/object_info` (the node definitions) as zod schemas and TypeScript types, with the
 * lookups prompt validation and the tools use. Part of `protocol.ts` (which re-exports it).
 */
import { z } from 'zod';

// ---------------------------------------------------------------------------------------------
// /object_info
// ---------------------------------------------------------------------------------------------

/**
 * An input's type: a type name (`"INT"`, `"IMAGE"`, `"*"`, `"COMBO"`, `"A,B"`) or, old style, the
 * combo's option list itself.
 */
export const InputTypeSchema = z.union([z.string(), z.array(z.unknown())]);
export type InputType = z.infer<typeof InputTypeSchema>;

/**
 * Known input options; anything else passes through. Custom nodes put odd values here, so the
 * numeric limits stay `unknown` (ComfyUI compares them with Python semantics, and so do we).
 */
export const InputOptionsSchema = z.looseObject({
  default: z.unknown().optional(),
  min: z.unknown().optional(),
  max: z.unknown().optional(),
  step: z.unknown().optional(),
  round: z.unknown().optional(),
  tooltip: z.unknown().optional(),
  multiline: z.unknown().optional(),
  /** New-style combo (`["COMBO", {options: [...]}]`). */
  options: z.array(z.unknown()).optional(),
  multiselect: z.unknown().optional(),
  image_upload: z.unknown().optional(),
  video_upload: z.unknown().optional(),
  audio_upload: z.unknown().optional(),
  file_upload: z.unknown().optional(),
  image_folder: z.unknown().optional(),
  forceInput: z.unknown().optional(),
  lazy: z.unknown().optional(),
  rawLink: z.unknown().optional(),
});
export type InputOptions = z.infer<typeof InputOptionsSchema>;

/** `[type]` or `[type, options]` (custom nodes sometimes append more; ignored). */
export const InputSpecSchema = z.tuple([InputTypeSchema, InputOptionsSchema.optional()], z.unknown());
export type InputSpec = z.infer<typeof InputSpecSchema>;

export const NodeDefSchema = z.looseObject({
  input: z.looseObject({
    required: z.record(z.string(), InputSpecSchema).optional(),
    optional: z.record(z.string(), InputSpecSchema).optional(),
    /** `"PROMPT"` (V1 nodes) or `["PROMPT"]` (V3 nodes). */
    hidden: z.record(z.string(), z.unknown()).optional(),
  }),
  input_order: z
    .looseObject({
      required: z.array(z.string()).optional(),
      optional: z.array(z.string()).optional(),
      hidden: z.array(z.string()).optional(),
    })
    .optional(),
  output: z.array(InputTypeSchema),
  output_is_list: z.array(z.boolean()).optional(),
  output_name: z.array(z.string()).optional(),
  output_tooltips: z.array(z.string().nullable()).optional(),
  name: z.string(),
  display_name: z.string().nullable().optional(),
  description: z.string().nullable().optional(),
  python_module: z.string().optional(),
  category: z.string().optional(),
  output_node: z.boolean(),
  deprecated: z.boolean().optional(),
  experimental: z.boolean().optional(),
  /** Present on V3 (`comfy_api`) nodes only. */
  api_node: z.boolean().optional(),
});
export type NodeDef = z.infer<typeof NodeDefSchema>;

export const ObjectInfoSchema = z.record(z.string(), NodeDefSchema);
export type ObjectInfo = z.infer<typeof ObjectInfoSchema>;

/**
 * Parses `/object_info` node by node, so one custom node with an odd definition does not make the
 * whole answer unusable. Returns the valid nodes and the names of the ones dropped.
 */
export function parseObjectInfo(raw: unknown): { objectInfo: ObjectInfo; invalid: string[] } {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new TypeError('object_info is not a JSON object');
  }
  const objectInfo: ObjectInfo = {};
  const invalid: string[] = [];
  for (const [name, def] of Object.entries(raw)) {
    const parsed = NodeDefSchema.safeParse(def);
    if (parsed.success) objectInfo[name] = parsed.data;
    else invalid.push(name);
  }
  return { objectInfo, invalid };
}

/** Where an input is declared, with its type and options (ComfyUI's `get_input_info`). */
export interface InputInfo {
  type: InputType;
  category: 'required' | 'optional' | 'hidden';
  options: InputOptions;
}

export function getInputInfo(def: NodeDef, name: string): InputInfo | null {
  for (const category of ['required', 'optional'] as const) {
    const spec = def.input[category]?.[name];
    if (spec) return { type: spec[0], category, options: spec[1] ?? {} };
  }
  const hidden = def.input.hidden?.[name];
  if (hidden !== undefined) {
    const type = Array.isArray(hidden) ? hidden[0] : hidden;
    return { type: typeof type === 'string' ? type : String(type), category: 'hidden', options: {} };
  }
  return null;
}

/** Combo options of an input, old style (the type is the list) or new (`COMBO` + `options`). */
export function comboOptions(spec: InputSpec | undefined): unknown[] | null {
  if (!spec) return null;
  if (Array.isArray(spec[0])) return spec[0];
  if (spec[0] === 'COMBO') return spec[1]?.options ?? [];
  return null;
}
