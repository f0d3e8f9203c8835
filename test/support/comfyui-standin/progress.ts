/**
 * ComfyUI's ProgressRegistry + WebUIProgressHandler: every start/update/finish of a node sends a
 * `progress_state` message listing all non-pending nodes of the prompt seen so far.
 */
import type { NodeId } from './types.js';

type NodeState = 'running' | 'finished';

export class ProgressRegistry {
  private readonly nodes = new Map<NodeId, { state: NodeState; value: number; max: number }>();

  constructor(
    private readonly promptId: string,
    private readonly send: (data: { prompt_id: string; nodes: Record<NodeId, unknown> }) => void,
  ) {}

  start(id: NodeId): void {
    this.nodes.set(id, { state: 'running', value: 0, max: 1 });
    this.publish();
  }

  update(id: NodeId, value: number, max: number): void {
    this.nodes.set(id, { state: 'running', value, max });
    this.publish();
  }

  finish(id: NodeId): void {
    const max = this.nodes.get(id)?.max ?? 1;
    this.nodes.set(id, { state: 'finished', value: max, max });
    this.publish();
  }

  private publish(): void {
    const nodes: Record<NodeId, unknown> = {};
    for (const [id, s] of this.nodes) {
      nodes[id] = {
        value: s.value,
        max: s.max,
        state: s.state,
        node_id: id,
        prompt_id: this.promptId,
        display_node_id: id,
        parent_node_id: null,
        real_node_id: id,
      };
    }
    this.send({ prompt_id: this.promptId, nodes });
  }
}
