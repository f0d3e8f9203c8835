import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import type { JobEventBus } from '../dispatch/job-event-bus.js';
import type { QueueService } from '../scheduler/queue-service.js';
import type { ClusterBus } from './cluster-bus.js';
import { RedisEventLog, type EventLog } from './event-log.js';
import { EventRelay } from './event-relay.js';

export { EventRelay, type Delivery } from './event-relay.js';
export { MemoryEventLog, RedisEventLog, type EventLog, type EventCursor } from './event-log.js';

/**
 * The event relay between processes when the cluster bus is shared, with the durable event log in
 * Redis (STORE=redis) unless `log` is given; null with one process (nothing to relay, and the
 * per-user `/ws` keeps its direct, in-process path).
 */
export async function openEventRelay(deps: {
  config: Config;
  cluster: ClusterBus;
  queue: QueueService;
  bus: JobEventBus;
  logger: Logger;
  log?: EventLog;
}): Promise<EventRelay | null> {
  const { config, cluster, queue, bus, logger } = deps;
  if (!cluster.shared) return null;
  let log: EventLog | null = deps.log ?? null;
  if (!log && config.STORE === 'redis' && config.REDIS_URL) {
    log = await RedisEventLog.open({
      url: config.REDIS_URL,
      prefix: config.REDIS_PREFIX,
      onError: (err) => logger.warn({ err }, 'event log connection problem'),
    });
  }
  return new EventRelay({ cluster, queue, bus, log, logger });
}
