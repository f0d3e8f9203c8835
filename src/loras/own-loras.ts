/**
 * How a participant's own LoRAs show in their ComfyUI: the loader lists (object_info combos and
 * `/models/loras`) of that participant gain their names, and never anyone else's. Workers keep
 * the files they fetched under {@link PRIVATE_LORA_DIR} in ComfyUI's loras folder; those paths are
 * never listed to anyone and never accepted from a prompt.
 */
import { comboOptions, type InputSpec, type NodeDef, type ObjectInfo } from '../comfy/protocol.js';

/**
 * The folder inside ComfyUI's `models/loras` where worker agents put participants' LoRAs
 * (`_users/<hash of the user>/<name>`). A LoRA name starting with it is never a participant's
 * to name: the agent alone writes it into a prompt.
 */
export const PRIVATE_LORA_DIR = '_users';

/** Whether a loras-folder name is inside the agents' private folder. */
export function isPrivateLoraName(name: string): boolean {
  const n = name.replace(/\\/g, '/').replace(/^(\.\/)+/, '');
  return n === PRIVATE_LORA_DIR || n.startsWith(`${PRIVATE_LORA_DIR}/`);
}

/** The loader inputs that list ComfyUI's loras folder, whatever else object_info holds. */
const LORA_LOADERS: [string, string][] = [
  ['LoraLoader', 'lora_name'],
  ['LoraLoaderModelOnly', 'lora_name'],
];

function withOptions(spec: InputSpec, options: string[]): InputSpec {
  if (Array.isArray(spec[0])) return [options, ...spec.slice(1)] as InputSpec;
  return ['COMBO', { ...(spec[1] ?? {}), options }, ...spec.slice(2)] as InputSpec;
}

/** A loras listing without the private folder, with `own` added (sorted, no duplicates). */
export function lorasListFor(shared: readonly unknown[], own: readonly string[]): string[] {
  const names = new Set<string>();
  for (const n of shared) if (typeof n === 'string' && !isPrivateLoraName(n)) names.add(n);
  for (const n of own) names.add(n);
  return [...names].sort();
}

/**
 * object_info as one participant sees it: every combo that lists the loras folder (the known LoRA
 * loaders, and any custom node's input offering exactly the same list) offers the shared LoRAs
 * plus `own`, and never a worker's private folder. Only the patched nodes are copied.
 */
export function objectInfoWithOwnLoras(objectInfo: ObjectInfo, own: readonly string[]): ObjectInfo {
  // Every prompt is checked against it: building it walks every combo of every node (about a
  // millisecond for a real ComfyUI's 400 nodes), so it is made once per object_info and LoRA list.
  // Results are shared: nobody changes an object_info (each patch copies what it changes).
  let byOwn = built.get(objectInfo);
  if (!byOwn) built.set(objectInfo, (byOwn = new Map()));
  const key = own.join('\u0000');
  const hit = byOwn.get(key);
  if (hit) {
    byOwn.delete(key);
    byOwn.set(key, hit);
    return hit;
  }
  const out = buildWithOwnLoras(objectInfo, own);
  byOwn.set(key, out);
  if (byOwn.size > MAX_LISTS_PER_OBJECT_INFO) byOwn.delete(byOwn.keys().next().value!);
  return out;
}

/** Per object_info (gone with it), the participants' views built from it, least recently used first. */
const built = new WeakMap<ObjectInfo, Map<string, ObjectInfo>>();
/** Different LoRA lists kept per object_info: a room's participants, with room to spare. */
const MAX_LISTS_PER_OBJECT_INFO = 256;

function buildWithOwnLoras(objectInfo: ObjectInfo, own: readonly string[]): ObjectInfo {
  let fingerprint: string | null = null;
  for (const [cls, input] of LORA_LOADERS) {
    const options = comboOptions(objectInfo[cls]?.input.required?.[input]);
    if (options && options.length > 0) {
      fingerprint = JSON.stringify(options);
      break;
    }
  }
  const known = new Set(LORA_LOADERS.map(([c, i]) => `${c}\u0000${i}`));
  const out: ObjectInfo = { ...objectInfo };
  for (const [cls, def] of Object.entries(objectInfo)) {
    let copy: NodeDef | null = null;
    for (const group of ['required', 'optional'] as const) {
      for (const [input, spec] of Object.entries(def.input?.[group] ?? {})) {
        const options = comboOptions(spec);
        if (!options) continue;
        const isLoras =
          known.has(`${cls}\u0000${input}`) ||
          (fingerprint !== null && JSON.stringify(options) === fingerprint);
        if (!isLoras) continue;
        copy ??= { ...def, input: { ...def.input } };
        copy.input[group] = { ...copy.input[group], [input]: withOptions(spec, lorasListFor(options, own)) };
      }
    }
    if (copy) out[cls] = copy;
  }
  return out;
}
