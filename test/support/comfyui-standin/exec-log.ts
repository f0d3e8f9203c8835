/**
 * The stand-in's record of every prompt it really executed (not part of ComfyUI): one `start` line
 * when the executor takes a prompt, one `end` line when it leaves it. Kept in memory (the last
 * 10,000 records, `standin.executions`) and, with `executionLog`, appended to a JSON-lines file
 * with a synchronous write per record, so a `kill -9` loses nothing already written: an execution
 * with a `start` and no `end` was cut short by the process dying.
 *
 * The soak (test/soak) reads these files to prove that no finished job was executed twice.
 */
import { appendFileSync } from 'node:fs';
import type { QueueItem } from './types.js';

/** How an execution ended: ComfyUI's success, an error, an interrupt, or the instance went away. */
export type ExecutionOutcome = 'completed' | 'error' | 'interrupted' | 'abandoned';

export interface ExecutionRecord {
  event: 'start' | 'end';
  promptId: string;
  /** ComfyUI's queue number of the prompt. */
  number: number;
  /** Milliseconds since the epoch. */
  at: number;
  /** The stand-in process, so executions of two lifetimes sharing one file stay apart. */
  pid: number;
  /** `start` only: every `filename_prefix` input in the prompt (the agent puts `<user>/<job>/` there). */
  prefixes?: string[];
  /** `end` only. */
  outcome?: ExecutionOutcome;
}

const MAX_KEPT = 10_000;

export class ExecutionLog {
  readonly records: ExecutionRecord[] = [];

  constructor(private readonly file?: string) {}

  started(item: QueueItem): void {
    const prefixes = Object.values(item[2])
      .map((n) => n.inputs.filename_prefix)
      .filter((p): p is string => typeof p === 'string');
    this.add({
      event: 'start',
      promptId: item[1],
      number: item[0],
      at: Date.now(),
      pid: process.pid,
      prefixes,
    });
  }

  ended(item: QueueItem, outcome: ExecutionOutcome): void {
    this.add({ event: 'end', promptId: item[1], number: item[0], at: Date.now(), pid: process.pid, outcome });
  }

  private add(record: ExecutionRecord): void {
    this.records.push(record);
    if (this.records.length > MAX_KEPT) this.records.splice(0, this.records.length - MAX_KEPT);
    if (this.file) appendFileSync(this.file, `${JSON.stringify(record)}\n`, { mode: 0o600 });
  }
}
