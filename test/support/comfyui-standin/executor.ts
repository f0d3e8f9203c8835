/**
 * The prompt worker: takes one queue item at a time and runs it like ComfyUI's PromptExecutor,
 * emitting the same WebSocket messages in the same order (see the fixture README's "Order of a
 * successful run"), keeping ComfyUI's output cache, and writing the history entry at the end.
 */
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { encodeRgbPng, describeValue, type ImageBatch } from './image.js';
import { ExecutionList } from './exec-order.js';
import type { ExecutionLog, ExecutionOutcome } from './exec-log.js';
import type { FaultController, ExecutionErrorFault } from './faults.js';
import { NodeError, isChanged, randomTempSuffix, runNode, type NodeContext } from './nodes.js';
import type { NodeCatalog } from './object-info.js';
import { OutputCache } from './output-cache.js';
import { ProgressRegistry } from './progress.js';
import type { PromptQueue } from './prompt-queue.js';
import { BinaryEvent, isLink } from './types.js';
import type {
  ApiPrompt,
  DataDirs,
  ExtraData,
  HistoryEntry,
  NodeId,
  NodeMeta,
  QueueItem,
  StatusMessage,
  UiOutput,
} from './types.js';
import { previewPayload, previewWithMetadataPayload, textPayload } from './ws-frames.js';
import type { WsHub } from './ws-hub.js';

class Interrupted extends Error {}
/** Thrown inside a job after a simulated crash: the job must leave without a trace. */
class Stopped extends Error {}

type Failure =
  | { kind: 'interrupted'; nodeId: NodeId }
  | {
      kind: 'error';
      nodeId: NodeId;
      type: string;
      message: string;
      currentInputs: Record<string, unknown[]>;
    };

export interface ExecutorDeps {
  queue: PromptQueue;
  hub: WsHub;
  catalog: NodeCatalog;
  dirs: DataDirs;
  faults: FaultController;
  /** Called as each prompt starts executing (test bookkeeping, not ComfyUI). */
  onStart?: (item: QueueItem) => void;
  /** Records each execution (start, end, outcome); optional. */
  executions?: ExecutionLog;
}

/** What a finished job leaves in the history. */
interface JobResult {
  history: Pick<HistoryEntry, 'outputs' | 'meta'>;
  status: HistoryEntry['status'];
}

/** Per-job state, so node helpers need not pass a dozen arguments around. */
interface Job {
  promptId: string;
  prompt: ApiPrompt;
  extraData: ExtraData;
  progress: ProgressRegistry;
  executed: Set<NodeId>;
  injectedError: ExecutionErrorFault | null;
  dieAfterMs: number | null;
}

export class Executor {
  /** ComfyUI's `server.client_id`: the client of the current (or last) prompt. */
  clientId: string | null = null;
  /** ComfyUI's `server.last_node_id`: re-sent to a reconnecting owner. */
  lastNodeId: string | null = null;
  private interrupted = false;
  private stopped = false;
  private readonly cache = new OutputCache();
  private readonly tempSuffixes = new Map<NodeId, string>();
  private readonly previewPngs = new WeakMap<ImageBatch, Buffer>();
  private currentJob: Job | null = null;

  constructor(private readonly deps: ExecutorDeps) {}

  start(): void {
    void this.loop();
  }

  /** nodes.interrupt_processing(): takes effect at the next node boundary or progress tick. */
  interrupt(): void {
    this.interrupted = true;
  }

  /** Stops for good (crash or shutdown): nothing more is sent, the running job is abandoned. */
  stop(): void {
    this.stopped = true;
    this.deps.queue.poke();
  }

  private emit(type: string, data: unknown, sid: string | null): void {
    if (!this.stopped) this.deps.hub.sendJson(type, data, sid);
  }

  private async loop(): Promise<void> {
    while (!this.stopped) {
      const next = await this.deps.queue.take(() => this.stopped);
      if (!next) return;
      await this.deps.faults.waitWhileHung();
      if (this.stopped) return;
      this.deps.executions?.started(next.item);
      const result = await this.execute(next.item).catch((err: unknown) => {
        if (err instanceof Stopped) return null;
        return this.internalFailure(next.item, err);
      });
      this.deps.executions?.ended(next.item, result && !this.stopped ? outcomeOf(result) : 'abandoned');
      if (!result || this.stopped) return;
      this.deps.queue.taskDone(next.taskId, result.history, result.status);
      if (this.clientId !== null) {
        this.emit('executing', { node: null, prompt_id: next.item[1] }, this.clientId);
      }
    }
  }

  /** A bug in the stand-in itself: report it loudly but keep the queue moving. */
  private internalFailure(item: QueueItem, err: unknown): JobResult {
    console.error(`comfyui-standin: internal error while running prompt ${item[1]}:`, err);
    const message: StatusMessage = [
      'execution_error',
      { prompt_id: item[1], exception_message: String(err) },
    ];
    return {
      history: { outputs: {}, meta: {} },
      status: { status_str: 'error', completed: false, messages: [message] },
    };
  }

  private async execute(item: QueueItem): Promise<JobResult> {
    const [, promptId, prompt, extraData, outputs] = item;
    this.interrupted = false;
    this.clientId = 'client_id' in extraData ? (extraData.client_id ?? null) : null;
    const messages: StatusMessage[] = [];
    const addMessage = (event: string, data: Record<string, unknown>, broadcast: boolean) => {
      const stamped = { ...data, timestamp: Date.now() };
      messages.push([event, stamped]);
      if (this.clientId !== null || broadcast) this.emit(event, stamped, this.clientId);
    };

    this.deps.onStart?.(item);
    addMessage('execution_start', { prompt_id: promptId }, false);
    await this.cache.setPrompt(prompt, {
      isChanged: async (id) => isChanged(prompt[id]!.class_type, prompt[id]!.inputs, this.deps.dirs),
      includesNodeId: (cls) => this.deps.catalog.get(cls)?.input.hidden?.unique_id === 'UNIQUE_ID',
    });
    const cached = Object.keys(prompt).filter((id) => this.cache.hasOutputs(id));
    addMessage('execution_cached', { nodes: cached, prompt_id: promptId }, false);

    const taken = this.deps.faults.onJobStart();
    const job: Job = {
      promptId,
      prompt,
      extraData,
      progress: new ProgressRegistry(promptId, (data) => this.emit('progress_state', data, this.clientId)),
      executed: new Set(),
      injectedError: taken.error,
      dieAfterMs: taken.die ? taken.die.afterMs : null,
    };
    this.currentJob = job;
    const failure = await this.runGraph(job, outputs).finally(() => (this.currentJob = null));
    if (failure) addMessage(...this.failureMessage(job, failure));
    else addMessage('execution_success', { prompt_id: promptId }, false);

    this.lastNodeId = null;
    return {
      history: this.historyResult(prompt),
      status: { status_str: failure ? 'error' : 'success', completed: !failure, messages },
    };
  }

  private async runGraph(job: Job, outputs: NodeId[]): Promise<Failure | null> {
    const list = new ExecutionList(
      job.prompt,
      (id) => this.cache.hasOutputs(id),
      (id) => this.deps.catalog.isOutputNode(job.prompt[id]!.class_type),
    );
    for (const id of outputs) list.addNode(id);
    while (!list.isEmpty()) {
      const id = list.stage();
      if (id === null) {
        const blamed = list.someBlockedNode()!;
        return {
          kind: 'error',
          nodeId: blamed,
          type: 'graph.DependencyCycleError',
          message: 'Dependency cycle detected',
          currentInputs: {},
        };
      }
      const failure = await this.runOne(job, id);
      if (failure) return failure;
      list.complete();
    }
    return null;
  }

  /** One node: replay from cache, or execute it for real. */
  private async runOne(job: Job, id: NodeId): Promise<Failure | null> {
    const cachedEntry = this.cache.get(id);
    if (cachedEntry?.outputs !== undefined) {
      if (this.clientId !== null) {
        const output = cachedEntry.ui?.output ?? null;
        this.emit('executed', { node: id, display_node: id, output, prompt_id: job.promptId }, this.clientId);
      }
      job.progress.finish(id);
      return null;
    }
    job.progress.start(id);
    const classType = job.prompt[id]!.class_type;
    const inputs = this.resolveInputs(job.prompt, id);
    if (this.clientId !== null) {
      this.lastNodeId = id;
      this.emit('executing', { node: id, display_node: id, prompt_id: job.promptId }, this.clientId);
    }
    try {
      await this.beforeNode(job, id, classType);
      const started = Date.now();
      const result = await runNode(classType, inputs, this.nodeContext(job, id));
      const rest = this.deps.faults.nodeDelayMs - (Date.now() - started);
      if (rest > 0) await sleep(rest);
      this.checkStopped();
      if (result.ui) this.recordUi(job, id, result.ui);
      this.cache.set(id, { outputs: result.outputs });
    } catch (err) {
      if (err instanceof Stopped) throw err;
      if (err instanceof Interrupted) return { kind: 'interrupted', nodeId: id };
      return this.errorFailure(id, inputs, err);
    }
    job.progress.finish(id);
    job.executed.add(id);
    return null;
  }

  /** Node boundary: hang gate, crash fault, injected error, interrupt check (in that order). */
  private async beforeNode(job: Job, id: NodeId, classType: string): Promise<void> {
    await yieldToLoop(); // let HTTP requests (e.g. /interrupt) in between nodes
    await this.deps.faults.waitWhileHung();
    if (job.dieAfterMs !== null) {
      const delay = job.dieAfterMs;
      job.dieAfterMs = null;
      if (delay === 0) this.deps.faults.crashNow();
      else setTimeout(() => this.currentJob === job && this.deps.faults.crashNow(), delay).unref();
    }
    this.checkStopped();
    const fault = job.injectedError;
    if (fault && (fault.nodeId ?? id) === id && (fault.classType ?? classType) === classType) {
      job.injectedError = null;
      throw new NodeError(
        fault.exceptionType ?? 'RuntimeError',
        fault.message ?? `stand-in injected execution error at node ${id}`,
      );
    }
    if (this.interrupted) throw new Interrupted();
  }

  private checkStopped(): void {
    if (this.stopped) throw new Stopped();
  }

  private resolveInputs(prompt: ApiPrompt, id: NodeId): Record<string, unknown> {
    const inputs: Record<string, unknown> = {};
    for (const [name, value] of Object.entries(prompt[id]!.inputs)) {
      inputs[name] = isLink(value) ? this.cache.get(value[0])?.outputs?.[value[1]] : value;
    }
    return inputs;
  }

  private recordUi(job: Job, id: NodeId, output: UiOutput): void {
    const meta: NodeMeta = { node_id: id, display_node: id, parent_node: null, real_node_id: id };
    this.cache.set(id, { ui: { meta, output } });
    if (this.clientId !== null) {
      this.emit('executed', { node: id, display_node: id, output, prompt_id: job.promptId }, this.clientId);
    }
  }

  private errorFailure(id: NodeId, inputs: Record<string, unknown>, err: unknown): Failure {
    const currentInputs = Object.fromEntries(Object.entries(inputs).map(([k, v]) => [k, [describeValue(v)]]));
    if (err instanceof NodeError)
      return { kind: 'error', nodeId: id, type: err.exceptionType, message: err.message, currentInputs };
    const message = err instanceof Error ? err.message : String(err);
    return { kind: 'error', nodeId: id, type: 'Exception', message, currentInputs };
  }

  private failureMessage(job: Job, failure: Failure): [string, Record<string, unknown>, boolean] {
    const base = {
      prompt_id: job.promptId,
      node_id: failure.nodeId,
      node_type: job.prompt[failure.nodeId]?.class_type,
      executed: [...job.executed],
    };
    if (failure.kind === 'interrupted') return ['execution_interrupted', base, true];
    const traceback = [
      '  File "comfyui-standin/executor.ts", line 0, in execute\n    <comfyui stand-in>\n',
      `  File "comfyui-standin/nodes.ts", line 0, in ${job.prompt[failure.nodeId]?.class_type ?? 'node'}\n    <comfyui stand-in>\n`,
    ];
    const detail = {
      ...base,
      exception_message: `${failure.message}\n`,
      exception_type: failure.type,
      traceback,
      current_inputs: failure.currentInputs,
      current_outputs: Object.keys(job.prompt),
    };
    return ['execution_error', detail, false];
  }

  /** `outputs`/`meta` of the history entry: UI results of this prompt's nodes, cached or not. */
  private historyResult(prompt: ApiPrompt) {
    const outputs: Record<NodeId, UiOutput> = {};
    const meta: Record<NodeId, NodeMeta> = {};
    for (const id of Object.keys(prompt)) {
      const ui = this.cache.get(id)?.ui;
      if (!ui) continue;
      outputs[id] = ui.output;
      meta[id] = ui.meta;
    }
    return { outputs, meta };
  }

  private nodeContext(job: Job, id: NodeId): NodeContext {
    return {
      nodeId: id,
      promptId: job.promptId,
      prompt: job.prompt,
      extraData: job.extraData,
      dirs: this.deps.dirs,
      defaultSleepMs: () => this.deps.faults.delayMs,
      videoBytes: () => this.deps.faults.videoBytes,
      progress: (value, max, preview) => this.reportProgress(job, id, value, max, preview),
      sendText: (text) => this.sendText(id, text),
      tempSuffix: () => {
        if (!this.tempSuffixes.has(id)) this.tempSuffixes.set(id, randomTempSuffix());
        return this.tempSuffixes.get(id)!;
      },
    };
  }

  /** ComfyUI's progress hook: interrupt check, progress_state (+ type-4 preview), progress (+ type-1). */
  private async reportProgress(job: Job, id: NodeId, value: number, max: number, preview?: ImageBatch) {
    this.checkStopped();
    await this.deps.faults.waitWhileHung();
    this.checkStopped();
    if (this.interrupted) throw new Interrupted();
    const sid = this.clientId;
    const png = preview ? this.previewPng(preview) : null;
    const withMetadata = this.deps.hub.supportsFeature(sid, 'supports_preview_metadata');
    job.progress.update(id, value, max);
    if (png && withMetadata) {
      const metadata = {
        node_id: id,
        prompt_id: job.promptId,
        display_node_id: id,
        parent_node_id: null,
        real_node_id: id,
      };
      this.deps.hub.sendBinary(
        BinaryEvent.PREVIEW_IMAGE_WITH_METADATA,
        previewWithMetadataPayload(png, metadata),
        sid,
      );
    }
    this.emit('progress', { value, max, prompt_id: job.promptId, node: id }, sid);
    if (png && !withMetadata) this.deps.hub.sendBinary(BinaryEvent.PREVIEW_IMAGE, previewPayload(png), sid);
  }

  /** The node passes the same preview each step: encode it once. */
  private previewPng(preview: ImageBatch): Buffer {
    let png = this.previewPngs.get(preview);
    if (!png) {
      png = encodeRgbPng(preview.frames[0]!, preview.width, preview.height, { level: 1 });
      this.previewPngs.set(preview, png);
    }
    return png;
  }

  /** send_progress_text. ComfyUI sends it to everyone (sid None), not just the prompt's client. */
  private sendText(id: NodeId, text: string): void {
    if (!this.stopped) this.deps.hub.sendBinary(BinaryEvent.TEXT, textPayload(id, text), null);
  }
}

function outcomeOf(result: JobResult): ExecutionOutcome {
  if (result.status.status_str === 'success') return 'completed';
  return result.status.messages.some(([event]) => event === 'execution_interrupted')
    ? 'interrupted'
    : 'error';
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
