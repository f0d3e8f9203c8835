/**
 * Instructor commands for one worker, run by the control-plane process that holds its socket.
 *
 * With several processes the dashboard (or `/api/v1`) of process B may be asked to drain a worker
 * connected to process A. B looks the worker up in the {@link WorkerDirectory}; when A holds it, B
 * sends a request on the cluster topic {@link COMMAND_TOPIC} addressed to A with a correlation id
 * and waits (at most `timeoutMs`) for A's answer: the worker's view after the command, or the
 * error A met. So the HTTP answer on B says what really happened on A; a process that does not
 * answer in time (killed, cut off) gives `WORKER_UNREACHABLE` and nothing is assumed.
 *
 * A token revoke is different: it is recorded in the store (CLI, any process) and every hub
 * re-checks its sockets' tokens on each heartbeat anyway. {@link tokenRevoked} just makes that
 * immediate everywhere (fire and forget): each process re-checks the sockets of that token now and
 * closes them with 4004.
 *
 * With the single-process bus every command runs locally, as before.
 */
import type { Logger } from 'pino';
import { toAppError } from '../http/error-handler.js';
import type { Dispatcher } from '../dispatch/dispatcher.js';
import type { WorkerHub } from '../dispatch/worker-hub.js';
import type { WorkerView } from '../dispatch/worker-registry.js';
import type { ClusterBus, Unsubscribe } from './cluster-bus.js';
import type { WorkerDirectory } from './worker-directory.js';
import { PendingRequests } from './pending-requests.js';

export const COMMAND_TOPIC = 'worker-commands';

/** A command for one worker, as it crosses the bus. */
export type WorkerCommand = { cmd: 'drain'; workerId: string; draining: boolean };

type CommandMessage =
  // `hop` 1: already forwarded once (the asker's view of where the worker is was stale).
  | { t: 'req'; id: string; to: string; command: WorkerCommand; hop?: number }
  // Answers go to every process; only the asker knows the (random) correlation id.
  | { t: 'res'; id: string; ok: true; view: WorkerView }
  | { t: 'res'; id: string; ok: false; code: string; message: string }
  | { t: 'revoked'; token: string };

/** The message announcing a token revoke (the CLI publishes it too). */
export function revokedMessage(tokenName: string): unknown {
  return { t: 'revoked', token: tokenName } satisfies CommandMessage;
}

export interface WorkerCommandsDeps {
  cluster: ClusterBus;
  directory: WorkerDirectory;
  dispatcher: Dispatcher;
  hub: WorkerHub;
  logger: Logger;
}

export class WorkerCommands {
  private readonly pending = new PendingRequests<WorkerView>();
  private unsubscribe: Unsubscribe | null = null;

  constructor(
    private readonly deps: WorkerCommandsDeps,
    private readonly opts: { timeoutMs?: number } = {},
  ) {}

  start(): void {
    if (this.unsubscribe || !this.deps.cluster.shared) return;
    this.unsubscribe = this.deps.cluster.subscribe(COMMAND_TOPIC, (m) => this.onMessage(m as CommandMessage));
  }

  stop(): void {
    this.unsubscribe?.();
    this.unsubscribe = null;
    this.pending.failAll();
  }

  /** Drains (no new jobs; it finishes what it holds) or undrains a worker, wherever it is connected. */
  drain(workerId: string, draining: boolean): Promise<WorkerView> {
    return this.run({ cmd: 'drain', workerId, draining });
  }

  /**
   * A worker token was revoked (the store already says so): every process re-checks the sockets
   * using it now, so they close with 4004 at once rather than at their next heartbeat.
   */
  async tokenRevoked(tokenName: string): Promise<void> {
    await this.deps.hub.recheckTokens(tokenName);
    if (this.deps.cluster.shared) await this.deps.cluster.publish(COMMAND_TOPIC, revokedMessage(tokenName));
  }

  /** Runs a command here or on the process holding the worker. */
  run(command: WorkerCommand): Promise<WorkerView> {
    const { cluster, directory } = this.deps;
    const where = cluster.shared ? directory.processOf(command.workerId) : null;
    if (where === null || where === cluster.processId) return Promise.resolve(this.runHere(command));
    return this.request(where, command);
  }

  private runHere(command: WorkerCommand): WorkerView {
    const view = this.deps.dispatcher.setDraining(command.workerId, command.draining);
    // Seen by the other processes' dashboards with the next snapshot, published now.
    this.deps.directory.publishNow();
    return this.deps.cluster.shared ? { ...view, process: this.deps.cluster.processId } : view;
  }

  private request(to: string, command: WorkerCommand, hop = 0): Promise<WorkerView> {
    // A forwarded request must answer before the asker gives up.
    const timeoutMs = (this.opts.timeoutMs ?? 5000) / (hop + 1);
    return this.pending.ask(
      (id) =>
        this.deps.cluster.publish(COMMAND_TOPIC, { t: 'req', id, to, command, hop } satisfies CommandMessage),
      timeoutMs,
      `The control-plane process holding worker ${command.workerId} did not answer within ${timeoutMs / 1000} s; try again.`,
    );
  }

  /**
   * Runs another process's request here, unless the worker has meanwhile reconnected to a third
   * process (the asker's directory was a moment behind): then it is forwarded there once.
   */
  private async answer(m: Extract<CommandMessage, { t: 'req' }>): Promise<void> {
    const { directory, cluster, logger } = this.deps;
    let answer: CommandMessage;
    try {
      const mine = directory.local.get(m.command.workerId);
      const holder = directory.processOf(m.command.workerId);
      const connectedHere = mine?.link?.open === true && mine.registered;
      const view =
        !connectedHere && (m.hop ?? 0) === 0 && holder !== null && holder !== cluster.processId
          ? await this.request(holder, m.command, 1)
          : this.runHere(m.command);
      answer = { t: 'res', id: m.id, ok: true, view };
    } catch (err) {
      const e = toAppError(err);
      answer = { t: 'res', id: m.id, ok: false, code: e.code, message: e.message };
    }
    logger.info({ command: m.command }, 'ran a worker command for another process');
    await cluster.publish(COMMAND_TOPIC, answer).catch(() => {});
  }

  private onMessage(m: CommandMessage): void {
    const me = this.deps.cluster.processId;
    switch (m.t) {
      case 'revoked':
        void this.deps.hub.recheckTokens(m.token);
        return;
      case 'req':
        if (m.to === me) void this.answer(m);
        return;
      case 'res':
        this.pending.settle(m.ok ? { id: m.id, ok: true, value: m.view } : m);
    }
  }
}
