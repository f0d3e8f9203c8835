/** UI-format workflow → API-format prompt, mirroring the ComfyUI frontend's graphToPrompt. */
export { convertWorkflow, type ApiNode, type ApiPromptOut, type ConvertResult } from './convert.js';
export { ConvertError, isUiWorkflow } from './graph.js';
export { widgetSlots, defaultWidgetValue, type WidgetSlot } from './widgets.js';
