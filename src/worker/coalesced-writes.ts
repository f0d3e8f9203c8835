/**
 * Frames sent on one connection in one turn of the event loop leave in one write.
 *
 * Every ComfyUI event crosses two more connections on its way to its owner (ComfyUI → agent →
 * control plane → participant), and every write wakes the reader at the other end: on a busy
 * machine the wake costs more than the frame (a third of the control plane's time on a job's round
 * trip went to socket writes). ComfyUI sends its events in bursts (`executed`, `progress_state`
 * and `execution_success` within 0.1 ms), and a burst that arrives in one read is relayed in one
 * write: the connection is corked at the first send of a turn and uncorked with `process.nextTick`,
 * which runs once the turn's callback and the promise continuations it queued are done. No timer:
 * a lone frame leaves at the end of the callback that sent it.
 */

/** The part of a `net.Socket` this needs. */
export interface Corkable {
  cork(): void;
  uncork(): void;
  readonly destroyed: boolean;
}

/** Call before each send on `socket`; a missing socket (tests' stand-ins) sends as before. */
export function coalescedWrites(socket: Corkable | null | undefined): () => void {
  if (!socket) return () => {};
  let corked = false;
  const uncork = (): void => {
    corked = false;
    socket.uncork();
  };
  return () => {
    if (corked || socket.destroyed) return;
    corked = true;
    socket.cork();
    process.nextTick(uncork);
  };
}
