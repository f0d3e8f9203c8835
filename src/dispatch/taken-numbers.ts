/**
 * The highest event number of each recent run (`<jobId>#<attempt>#<run>`) a process took from a
 * worker (`job_event.seq`): a worker that lost its connection sends its events again, in order,
 * and those this process had are dropped (WorkerReports). Events held back with a job's ending move
 * with it to the worker's next connection (the dispatcher's hello), so "taken" covers them too.
 * With several processes the durable event log keeps each number once besides (event-log.ts).
 */

/** Runs remembered, least recently used forgotten first (far more than run within a reconnect). */
const MAX_TRACKED_RUNS = 10_000;

export class TakenNumbers {
  private readonly last = new Map<string, number>();

  /** Whether event `seq` of `run` was taken here already. */
  had(run: string, seq: number): boolean {
    const last = this.last.get(run);
    return last !== undefined && seq <= last;
  }

  /** Event `seq` of `run` was taken (published, or held back with the job's ending). */
  take(run: string, seq: number): void {
    // Re-inserted, so the map's order is least recently used first.
    this.last.delete(run);
    this.last.set(run, seq);
    if (this.last.size > MAX_TRACKED_RUNS) this.last.delete(this.last.keys().next().value!);
  }
}
