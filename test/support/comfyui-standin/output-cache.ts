/**
 * ComfyUI's "classic" cache: node results are keyed by an input signature (class, IS_CHANGED
 * value, widget values and, recursively, the signatures of linked ancestors). Before each prompt
 * the entries not used by that prompt are dropped, so only results from the previous prompt(s)
 * that the new prompt shares are reused — exactly what produces `execution_cached`.
 */
import { randomUUID } from 'node:crypto';
import type { ApiPrompt, NodeId, NodeMeta, UiOutput } from './types.js';
import { isLink } from './types.js';

export interface CacheEntry {
  outputs?: unknown[];
  ui?: { meta: NodeMeta; output: UiOutput };
}

export interface SignatureHooks {
  /** IS_CHANGED result; `NaN` means "never cache" (e.g. LoadImage of an unreadable file). */
  isChanged(id: NodeId): Promise<unknown>;
  /** Nodes whose identity matters (hidden UNIQUE_ID input, NOT_IDEMPOTENT). */
  includesNodeId(classType: string): boolean;
}

export class OutputCache {
  private readonly entries = new Map<string, CacheEntry>();
  private signatures = new Map<NodeId, string>();

  /** Computes the prompt's signatures and forgets everything the prompt does not use. */
  async setPrompt(prompt: ApiPrompt, hooks: SignatureHooks): Promise<void> {
    const changed = new Map<NodeId, unknown>();
    for (const id of Object.keys(prompt)) changed.set(id, await hooks.isChanged(id));
    const memo = new Map<NodeId, string>();
    const visiting = new Set<NodeId>();

    const signature = (id: NodeId): string => {
      const known = memo.get(id);
      if (known !== undefined) return known;
      const node = prompt[id];
      const flag = changed.get(id);
      if (!node || visiting.has(id) || Number.isNaN(flag)) return `uncacheable:${randomUUID()}`;
      visiting.add(id);
      const inputs = Object.keys(node.inputs)
        .sort()
        .map((key) => {
          const value = node.inputs[key];
          return isLink(value) ? [key, 'LINK', signature(value[0]), value[1]] : [key, value];
        });
      visiting.delete(id);
      const sig = JSON.stringify([
        node.class_type,
        flag ?? false,
        hooks.includesNodeId(node.class_type) ? id : null,
        inputs,
      ]);
      memo.set(id, sig);
      return sig;
    };

    this.signatures = new Map(Object.keys(prompt).map((id) => [id, signature(id)]));
    const used = new Set(this.signatures.values());
    for (const key of this.entries.keys()) if (!used.has(key)) this.entries.delete(key);
  }

  get(id: NodeId): CacheEntry | undefined {
    const key = this.signatures.get(id);
    return key === undefined ? undefined : this.entries.get(key);
  }

  hasOutputs(id: NodeId): boolean {
    return this.get(id)?.outputs !== undefined;
  }

  set(id: NodeId, patch: CacheEntry): void {
    const key = this.signatures.get(id);
    if (key === undefined) return;
    this.entries.set(key, { ...this.entries.get(key), ...patch });
  }

  clear(): void {
    this.entries.clear();
  }
}
