/**
 * ComfyUI's PromptQueue: a binary heap of queue tuples ordered by (number, prompt_id), the
 * currently running items, and the history. `GET /queue` returns the heap array as-is (not
 * sorted), so the heap follows Python's heapq algorithm to give the same pending order.
 */
import type { HistoryEntry, QueueItem, StatusMessage, NodeMeta, UiOutput } from './types.js';

const MAXIMUM_HISTORY_SIZE = 10000;
/** Keys ComfyUI strips from extra_data before storing history. */
const SENSITIVE_EXTRA_DATA_KEYS = ['auth_token_comfy_org', 'api_key_comfy_org'];

function less(a: QueueItem, b: QueueItem): boolean {
  if (a[0] !== b[0]) return a[0] < b[0];
  return a[1] < b[1];
}

// --- Python heapq, same sift order so the array layout matches ComfyUI's ---
function siftDown(heap: QueueItem[], start: number, pos: number): void {
  const item = heap[pos]!;
  while (pos > start) {
    const parentPos = (pos - 1) >> 1;
    const parent = heap[parentPos]!;
    if (!less(item, parent)) break;
    heap[pos] = parent;
    pos = parentPos;
  }
  heap[pos] = item;
}

function siftUp(heap: QueueItem[], pos: number): void {
  const end = heap.length;
  const start = pos;
  const item = heap[pos]!;
  let child = 2 * pos + 1;
  while (child < end) {
    const right = child + 1;
    if (right < end && !less(heap[child]!, heap[right]!)) child = right;
    heap[pos] = heap[child]!;
    pos = child;
    child = 2 * pos + 1;
  }
  heap[pos] = item;
  siftDown(heap, start, pos);
}

function heapPush(heap: QueueItem[], item: QueueItem): void {
  heap.push(item);
  siftDown(heap, 0, heap.length - 1);
}

function heapPop(heap: QueueItem[]): QueueItem {
  const last = heap.pop()!;
  if (heap.length === 0) return last;
  const top = heap[0]!;
  heap[0] = last;
  siftUp(heap, 0);
  return top;
}

function heapify(heap: QueueItem[]): void {
  for (let i = (heap.length >> 1) - 1; i >= 0; i--) siftUp(heap, i);
}

export interface HistoryQuery {
  maxItems?: number;
  offset?: number;
}

export class PromptQueue {
  private heap: QueueItem[] = [];
  private readonly running = new Map<number, QueueItem>();
  private readonly history = new Map<string, HistoryEntry>();
  private taskCounter = 0;
  private wake: (() => void) | null = null;

  /** `onUpdate` is ComfyUI's `server.queue_updated()`: it broadcasts a `status` message. */
  constructor(private readonly onUpdate: () => void) {}

  put(item: QueueItem): void {
    heapPush(this.heap, item);
    this.onUpdate();
    this.wake?.();
  }

  /** Waits for an item, moves it to "running" and announces the change (the 2nd status). */
  async take(isStopped: () => boolean): Promise<{ item: QueueItem; taskId: number } | null> {
    while (this.heap.length === 0) {
      if (isStopped()) return null;
      await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = null;
    }
    if (isStopped()) return null;
    const item = heapPop(this.heap);
    const taskId = this.taskCounter++;
    this.running.set(taskId, structuredClone(item));
    this.onUpdate();
    return { item, taskId };
  }

  /** Unblocks a pending `take()` so a stopping executor can exit. */
  poke(): void {
    this.wake?.();
  }

  taskDone(
    taskId: number,
    result: { outputs: Record<string, UiOutput>; meta: Record<string, NodeMeta> },
    status: { status_str: 'success' | 'error'; completed: boolean; messages: StatusMessage[] },
  ): void {
    const item = this.running.get(taskId);
    if (!item) return;
    this.running.delete(taskId);
    if (this.history.size > MAXIMUM_HISTORY_SIZE) {
      const oldest = this.history.keys().next().value;
      if (oldest !== undefined) this.history.delete(oldest);
    }
    for (const key of SENSITIVE_EXTRA_DATA_KEYS) delete item[3][key];
    this.history.set(item[1], { prompt: item, outputs: result.outputs, status, meta: result.meta });
    this.onUpdate();
  }

  /** `[running, pending]` exactly as `GET /queue` lists them (pending in heap order). */
  currentQueue(): { running: QueueItem[]; pending: QueueItem[] } {
    return { running: [...this.running.values()], pending: [...this.heap] };
  }

  tasksRemaining(): number {
    return this.heap.length + this.running.size;
  }

  wipeQueue(): void {
    this.heap = [];
    this.onUpdate();
  }

  /**
   * Deletes the first pending item matching `match`. Like ComfyUI, deleting the last pending item
   * goes through wipeQueue() and therefore announces the change twice.
   */
  deleteQueueItem(match: (item: QueueItem) => boolean): boolean {
    const index = this.heap.findIndex(match);
    if (index < 0) return false;
    if (this.heap.length === 1) {
      this.wipeQueue();
    } else {
      this.heap.splice(index, 1);
      heapify(this.heap);
    }
    this.onUpdate();
    return true;
  }

  /** ComfyUI's get_history: all (oldest first), the last `maxItems`, or from `offset`. */
  getHistory(query: HistoryQuery = {}): Record<string, HistoryEntry> {
    const out: Record<string, HistoryEntry> = {};
    const { maxItems } = query;
    let offset = query.offset ?? -1;
    if (offset < 0 && maxItems !== undefined) offset = this.history.size - maxItems;
    let i = 0;
    for (const [id, entry] of this.history) {
      if (i >= offset) {
        out[id] = entry;
        if (maxItems !== undefined && Object.keys(out).length >= maxItems) break;
      }
      i++;
    }
    return out;
  }

  historyItem(promptId: string): HistoryEntry | undefined {
    return this.history.get(promptId);
  }

  historySize(): number {
    return this.history.size;
  }

  wipeHistory(): void {
    this.history.clear();
  }

  deleteHistoryItem(promptId: string): void {
    this.history.delete(promptId);
  }
}
