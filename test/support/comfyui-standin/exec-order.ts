/**
 * ComfyUI's ExecutionList: a topological "dissolve" of the graph that only pulls in uncached
 * ancestors and, among ready nodes, prefers output nodes (the "UX-friendly" order that runs a
 * PreviewImage as soon as its input exists). Reproduced so node order matches the transcripts.
 */
import type { ApiPrompt, NodeId } from './types.js';
import { isLink } from './types.js';

export class ExecutionList {
  /** Insertion-ordered like the Python dict, which decides ties between ready nodes. */
  private readonly pending = new Map<NodeId, true>();
  private readonly blockCount = new Map<NodeId, number>();
  /** from → (to → sockets) */
  private readonly blocking = new Map<NodeId, Map<NodeId, Set<number>>>();
  private staged: NodeId | null = null;

  constructor(
    private readonly prompt: ApiPrompt,
    private readonly isCached: (id: NodeId) => boolean,
    private readonly isOutput: (id: NodeId) => boolean,
  ) {}

  addNode(id: NodeId): void {
    const stack = [id];
    const links: Array<[NodeId, number, NodeId]> = [];
    while (stack.length > 0) {
      const current = stack.pop()!;
      if (this.pending.has(current)) continue;
      this.pending.set(current, true);
      this.blockCount.set(current, 0);
      this.blocking.set(current, new Map());
      for (const value of Object.values(this.prompt[current]?.inputs ?? {})) {
        if (!isLink(value) || this.isCached(value[0])) continue;
        stack.push(value[0]);
        links.push([value[0], value[1], current]);
      }
    }
    for (const [from, socket, to] of links) this.addStrongLink(from, socket, to);
  }

  private addStrongLink(from: NodeId, socket: number, to: NodeId): void {
    if (this.isCached(from)) return;
    this.addNode(from);
    const targets = this.blocking.get(from)!;
    if (!targets.has(to)) {
      targets.set(to, new Set());
      this.blockCount.set(to, (this.blockCount.get(to) ?? 0) + 1);
    }
    targets.get(to)!.add(socket);
  }

  isEmpty(): boolean {
    return this.pending.size === 0;
  }

  /** Picks the next node; `null` means the remaining nodes form a cycle. */
  stage(): NodeId | null {
    const ready = [...this.pending.keys()].filter((id) => this.blockCount.get(id) === 0);
    if (ready.length === 0) return null;
    this.staged = this.pick(ready);
    return this.staged;
  }

  /** Any node of the cycle, for the error report. */
  someBlockedNode(): NodeId | undefined {
    return this.pending.keys().next().value;
  }

  complete(): void {
    const id = this.staged!;
    this.pending.delete(id);
    for (const to of this.blocking.get(id)?.keys() ?? []) {
      this.blockCount.set(to, (this.blockCount.get(to) ?? 1) - 1);
    }
    this.blocking.delete(id);
    this.staged = null;
  }

  private pick(ready: NodeId[]): NodeId {
    const blocks = (id: NodeId) => [...(this.blocking.get(id)?.keys() ?? [])];
    const direct = ready.find((id) => this.isOutput(id));
    if (direct !== undefined) return direct;
    const feedsOutput = ready.find((id) => blocks(id).some((to) => this.isOutput(to)));
    if (feedsOutput !== undefined) return feedsOutput;
    const feedsOutput2 = ready.find((id) =>
      blocks(id).some((to) => blocks(to).some((t2) => this.isOutput(t2))),
    );
    return feedsOutput2 ?? ready[0]!;
  }
}
