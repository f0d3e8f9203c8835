/**
 * Which widgets the ComfyUI frontend (v1.45) gives a node, read from its object_info entry, so a
 * UI-format node's positional `widgets_values` can be named. Mirrors `litegraphService.addInputs`
 * (input_order, then required before optional), the widget constructors' extra widgets
 * (`control_after_generate` after seed-like INTs and flagged combos/floats) and the upload
 * extensions' `upload` button (appended to the required inputs of media combos).
 */
import type { InputSpec, NodeDef } from '../protocol.js';

/** Input types the frontend builds a widget for (`src/scripts/widgets.ts` ComfyWidgets). */
const WIDGET_TYPES = new Set([
  'INT',
  'FLOAT',
  'BOOLEAN',
  'STRING',
  'MARKDOWN',
  'COMBO',
  'IMAGEUPLOAD',
  'COLOR',
  'IMAGECOMPARE',
  'BOUNDING_BOX',
  'CHART',
  'GALLERIA',
  'PAINTER',
  'TEXTAREA',
  'CURVE',
  'RANGE',
]);

export interface WidgetSlot {
  /** The widget's name: the input name, or `control_after_generate` / `upload`. */
  name: string;
  /** Whether the value goes into the API prompt (`options.serialize !== false`). */
  inPrompt: boolean;
  /** The input spec of a prompt widget (for its default value). */
  spec?: InputSpec;
}

const opts = (spec: InputSpec): Record<string, unknown> => (spec[1] ?? {}) as Record<string, unknown>;

function widgetType(spec: InputSpec): string | null {
  const o = opts(spec);
  if (typeof o.widgetType === 'string') return o.widgetType;
  if (Array.isArray(spec[0])) return 'COMBO';
  return typeof spec[0] === 'string' ? spec[0] : null;
}

/** `isMediaUploadComboInput`, plus audio (uploadAudio.ts adds the same `upload` button). */
function isMediaUpload(spec: InputSpec): boolean {
  const o = opts(spec);
  const flagged =
    o.image_upload === true ||
    o.video_upload === true ||
    o.animated_image_upload === true ||
    o.audio_upload === true;
  return flagged && (Array.isArray(spec[0]) || spec[0] === 'COMBO');
}

/** `getOrderedInputSpecs`: input_order's required, then its optional, then the rest. */
function orderedInputs(def: NodeDef): [string, InputSpec, boolean][] {
  const required = Object.entries(def.input.required ?? {});
  const optional = Object.entries(def.input.optional ?? {});
  const upload = required.find(([, spec]) => isMediaUpload(spec));
  // The extension adds `upload` to `required` (replacing any input of that name).
  const req = upload
    ? [...required.filter(([n]) => n !== 'upload'), ['upload', ['IMAGEUPLOAD', {}]] as [string, InputSpec]]
    : required;
  const all: [string, InputSpec, boolean][] = [
    ...req.map(([n, s]) => [n, s, false] as [string, InputSpec, boolean]),
    ...optional
      .filter(([n]) => !req.some(([r]) => r === n))
      .map(([n, s]) => [n, s, true] as [string, InputSpec, boolean]),
  ];
  const order = def.input_order;
  if (!order) return all;
  const out: [string, InputSpec, boolean][] = [];
  for (const name of order.required ?? []) {
    const e = all.find(([n, , o]) => n === name && !o);
    if (e) out.push(e);
  }
  for (const name of order.optional ?? []) {
    const e = all.find(([n, , o]) => n === name && o);
    if (e) out.push(e);
  }
  for (const e of all) if (!out.includes(e)) out.push(e);
  return out;
}

/** The widgets, in the order `widgets_values` lists them. */
export function widgetSlots(def: NodeDef): WidgetSlot[] {
  const slots: WidgetSlot[] = [];
  for (const [name, spec] of orderedInputs(def)) {
    const type = widgetType(spec);
    const o = opts(spec);
    if (!type || !WIDGET_TYPES.has(type) || o.forceInput === true) continue;
    if (type === 'IMAGEUPLOAD') {
      slots.push({ name, inPrompt: false });
      continue;
    }
    slots.push({ name, inPrompt: true, spec });
    const cag = o.control_after_generate;
    // useIntWidget: `control_after_generate ?? name is seed/noise_seed`; combos and floats only
    // when the spec asks for it. A string (the default mode) counts as asking.
    const control =
      type === 'INT'
        ? Boolean(cag ?? ['seed', 'noise_seed'].includes(name))
        : (type === 'COMBO' || type === 'FLOAT') && Boolean(cag);
    if (control) slots.push({ name: 'control_after_generate', inPrompt: false });
  }
  return slots;
}

/** The value a freshly created widget has: the spec's default, else the frontend's fallback. */
export function defaultWidgetValue(spec: InputSpec): unknown {
  const o = opts(spec);
  const type = widgetType(spec);
  if (type === 'COMBO') {
    const options = Array.isArray(spec[0]) ? spec[0] : Array.isArray(o.options) ? o.options : [];
    return o.default ?? options[0];
  }
  if (o.default !== undefined) return o.default;
  if (type === 'INT' || type === 'FLOAT') return typeof o.min === 'number' ? Math.max(0, o.min) : 0;
  if (type === 'BOOLEAN') return false;
  if (type === 'STRING') return '';
  return undefined;
}
