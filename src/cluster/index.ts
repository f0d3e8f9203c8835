import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import { LocalClusterBus, newProcessId, type ClusterBus } from './cluster-bus.js';

export { LocalClusterBus, MemoryClusterHub, type ClusterBus, type ClusterHandler } from './cluster-bus.js';

/**
 * The bus between control-plane processes: Redis pub/sub with STORE=redis (any number of processes
 * may share that Redis), else the single-process no-op.
 */
export async function openClusterBus(config: Config, logger: Logger): Promise<ClusterBus> {
  const processId = newProcessId();
  const onError = (err: unknown) => logger.warn({ err }, 'cluster bus problem');
  if (config.STORE !== 'redis') return new LocalClusterBus(processId, null, onError);
  const { RedisClusterBus } = await import('./redis-cluster-bus.js');
  return RedisClusterBus.open({ url: config.REDIS_URL!, prefix: config.REDIS_PREFIX, processId, onError });
}
