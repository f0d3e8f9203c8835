/**
 * GPUs on demand: builds the autoscaler from config (null when AUTOSCALE_PROVIDER=none). Bad
 * configuration fails at start with one sentence (a {@link StartupError}): the schema's
 * cross-field checks, then the provider's own check and the worker token.
 */
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import type { ClusterBus } from '../cluster/index.js';
import type { WorkerReader } from '../dispatch/worker-registry.js';
import type { QueueService } from '../scheduler/queue-service.js';
import { StartupError } from '../startup-error.js';
import { Autoscaler } from './autoscaler.js';
import { CommandProvider } from './command-provider.js';
import type { PoolPolicy } from './decide.js';
import { LocalProvider } from './local-provider.js';
import { RunpodProvider } from './runpod-provider.js';
import { VerdaProvider } from './verda-provider.js';
import { RunpodServerlessProvider } from './runpod-serverless-provider.js';
import { VerdaContainersProvider } from './verda-containers-provider.js';
import type { Provider } from './provider.js';

export { Autoscaler } from './autoscaler.js';
export type { AutoscaleAlert, AutoscaleView, DecisionRecord } from './autoscaler.js';
export type { Provider } from './provider.js';

export function policyFromConfig(config: Config): PoolPolicy {
  const hoursCap = config.AUTOSCALE_DAILY_GPU_HOURS * 3_600_000;
  const moneyCap =
    config.AUTOSCALE_DAILY_BUDGET > 0 && config.AUTOSCALE_PRICE_PER_HOUR > 0
      ? (config.AUTOSCALE_DAILY_BUDGET / config.AUTOSCALE_PRICE_PER_HOUR) * 3_600_000
      : 0;
  const caps = [hoursCap, moneyCap].filter((c) => c > 0);
  return {
    minWorkers: config.AUTOSCALE_MIN_WORKERS,
    maxWorkers: config.AUTOSCALE_MAX_WORKERS,
    jobsPerWorker: config.AUTOSCALE_JOBS_PER_WORKER,
    maxWaitMs: config.AUTOSCALE_MAX_WAIT_SECONDS * 1000,
    idleMs: config.AUTOSCALE_IDLE_SECONDS * 1000,
    upCooldownMs: config.AUTOSCALE_UP_COOLDOWN_SECONDS * 1000,
    downCooldownMs: config.AUTOSCALE_DOWN_COOLDOWN_SECONDS * 1000,
    startTimeoutMs: config.AUTOSCALE_START_TIMEOUT_SECONDS * 1000,
    dailyBudgetMs: caps.length > 0 ? Math.round(Math.min(...caps)) : 0,
    budgetAlertFraction: config.AUTOSCALE_BUDGET_ALERT_PERCENT / 100,
  };
}

/** The URL started agents connect to. */
export function agentServerUrl(config: Config): string {
  if (config.AUTOSCALE_SERVER_URL) return config.AUTOSCALE_SERVER_URL;
  if (config.PUBLIC_URL) return config.PUBLIC_URL;
  const scheme = config.TLS_CERT ? 'https' : 'http';
  return `${scheme}://127.0.0.1:${config.PORT}`;
}

export function providerFromConfig(config: Config, logger?: Logger): Provider | null {
  const token = config.AUTOSCALE_WORKER_TOKEN ?? '';
  // The agents' own idle exit is a safety net behind the autoscaler's: should the control plane be
  // gone, a GPU still stops billing a little after the autoscaler would have stopped it.
  const exitWhenIdleSeconds = Math.max(60, config.AUTOSCALE_IDLE_SECONDS + 120);
  switch (config.AUTOSCALE_PROVIDER) {
    case 'none':
      return null;
    case 'local':
      return new LocalProvider({
        serverUrl: agentServerUrl(config),
        token,
        comfyuiUrls: config.AUTOSCALE_LOCAL_COMFYUI_URLS ?? [],
        exitWhenIdleSeconds,
        ...(config.AUTOSCALE_LOCAL_COMMAND?.length ? { command: config.AUTOSCALE_LOCAL_COMMAND } : {}),
        ...(logger ? { logger } : {}),
      });
    case 'command':
      return new CommandProvider({
        up: config.AUTOSCALE_COMMAND_UP ?? '',
        down: config.AUTOSCALE_COMMAND_DOWN ?? '',
        list: config.AUTOSCALE_COMMAND_LIST ?? '',
        serverUrl: agentServerUrl(config),
        token,
        exitWhenIdleSeconds,
        ...(config.AUTOSCALE_INSTANCE_TYPE ? { instanceType: config.AUTOSCALE_INSTANCE_TYPE } : {}),
      });
    case 'verda':
      return new VerdaProvider({
        apiUrl: config.AUTOSCALE_VERDA_API_URL,
        clientId: config.AUTOSCALE_VERDA_CLIENT_ID ?? '',
        clientSecret: config.AUTOSCALE_VERDA_CLIENT_SECRET ?? '',
        instanceType: config.AUTOSCALE_INSTANCE_TYPE ?? '',
        image: config.AUTOSCALE_VERDA_IMAGE ?? '',
        locations: config.AUTOSCALE_VERDA_LOCATIONS,
        sshKeyIds: config.AUTOSCALE_VERDA_SSH_KEY_IDS,
        workerImage: config.AUTOSCALE_WORKER_IMAGE ?? '',
        spot: config.AUTOSCALE_VERDA_SPOT,
        serverUrl: agentServerUrl(config),
        token,
        exitWhenIdleSeconds,
      });
    case 'runpod': {
      const gpuTypes = config.AUTOSCALE_RUNPOD_GPU_TYPES ?? [];
      return new RunpodProvider({
        apiUrl: config.AUTOSCALE_RUNPOD_API_URL,
        apiKey: config.AUTOSCALE_RUNPOD_API_KEY ?? '',
        gpuTypes,
        // RunPod's GPU ids have spaces; the label for start times and prices does not.
        instanceType:
          config.AUTOSCALE_INSTANCE_TYPE ??
          (gpuTypes[0] ?? 'runpod')
            .replace(/^NVIDIA (GeForce )?/, '')
            .replace(/\s+/g, '-')
            .toLowerCase(),
        image: config.AUTOSCALE_WORKER_IMAGE ?? '',
        cloudType: config.AUTOSCALE_RUNPOD_CLOUD_TYPE,
        dataCenters: config.AUTOSCALE_RUNPOD_DATA_CENTERS,
        containerDiskGb: config.AUTOSCALE_RUNPOD_DISK_GB,
        networkVolumeId: config.AUTOSCALE_RUNPOD_NETWORK_VOLUME,
        serverUrl: agentServerUrl(config),
        token,
        exitWhenIdleSeconds,
      });
    }
    // Serverless pools: the image and the worker's environment live in the endpoint's template /
    // the deployment's container settings, set once by the instructor (docs/gpu-hosts.md).
    case 'runpod-serverless':
      return new RunpodServerlessProvider({
        apiUrl: config.AUTOSCALE_RUNPOD_API_URL,
        apiKey: config.AUTOSCALE_RUNPOD_API_KEY ?? '',
        endpointId: config.AUTOSCALE_RUNPOD_ENDPOINT_ID ?? '',
        instanceType: config.AUTOSCALE_INSTANCE_TYPE ?? 'runpod-serverless',
      });
    case 'verda-containers':
      return new VerdaContainersProvider({
        apiUrl: config.AUTOSCALE_VERDA_API_URL,
        clientId: config.AUTOSCALE_VERDA_CLIENT_ID ?? '',
        clientSecret: config.AUTOSCALE_VERDA_CLIENT_SECRET ?? '',
        deployment: config.AUTOSCALE_VERDA_DEPLOYMENT ?? '',
        instanceType: config.AUTOSCALE_INSTANCE_TYPE ?? 'verda-containers',
      });
  }
}

/**
 * The autoscaler for this config, checked (provider configuration, worker token), not started;
 * null without a provider.
 */
export async function createAutoscaler(
  config: Config,
  deps: {
    queue: QueueService;
    workers: WorkerReader;
    verifyWorkerToken: (token: string) => Promise<string | null>;
    logger?: Logger;
    /** Several processes: the loop runs on one at a time (see shared-state.ts). */
    cluster?: ClusterBus;
  },
): Promise<Autoscaler | null> {
  const provider = providerFromConfig(config, deps.logger);
  if (!provider) return null;
  try {
    await provider.check();
  } catch (err) {
    throw new StartupError(`AUTOSCALE_PROVIDER=${provider.name}: ${(err as Error).message}.`);
  }
  if (!(await deps.verifyWorkerToken(config.AUTOSCALE_WORKER_TOKEN ?? ''))) {
    throw new StartupError(
      'AUTOSCALE_WORKER_TOKEN is not a valid worker token: use one of WORKER_TOKENS or create one with `comfy-multi workers token create NAME`.',
    );
  }
  return new Autoscaler(
    {
      provider,
      queue: deps.queue,
      workers: deps.workers,
      ...(deps.cluster ? { cluster: deps.cluster } : {}),
    },
    {
      policy: policyFromConfig(config),
      intervalMs: config.AUTOSCALE_INTERVAL_SECONDS * 1000,
      pricePerHour: config.AUTOSCALE_PRICE_PER_HOUR,
      ...(config.AUTOSCALE_PRICES ? { prices: config.AUTOSCALE_PRICES } : {}),
      dryRun: config.AUTOSCALE_DRY_RUN,
      ...(deps.logger ? { logger: deps.logger } : {}),
    },
  );
}

/**
 * `comfy-multi autoscale --dry-run`: checks the provider's configuration as the server would at
 * start and says what the autoscaler would do, without starting anything.
 */
export async function describeAutoscale(config: Config): Promise<string> {
  const provider = providerFromConfig(config);
  if (!provider) return 'Autoscaling is off (AUTOSCALE_PROVIDER=none): workers are started by hand.\n';
  try {
    await provider.check();
  } catch (err) {
    throw new StartupError(`AUTOSCALE_PROVIDER=${provider.name}: ${(err as Error).message}.`);
  }
  const p = policyFromConfig(config);
  const s = (ms: number) => `${Math.round(ms / 1000)} s`;
  const lines = [
    `provider ${provider.name} (${provider.instanceType}), ${p.minWorkers}-${p.maxWorkers} workers, agents connect to ${agentServerUrl(config)}`,
    `scale up: waiting + running jobs above ${p.jobsPerWorker} per worker, or the oldest waiting ${s(p.maxWaitMs)}; cool-down ${s(p.upCooldownMs)}`,
    `scale down: a worker idle (or one to spare) for ${s(p.idleMs)}; cool-down ${s(p.downCooldownMs)}; a start not registered after ${s(p.startTimeoutMs)} is given up`,
    p.dailyBudgetMs > 0
      ? `daily cap ${(p.dailyBudgetMs / 3_600_000).toFixed(2)} GPU h, alert at ${Math.round(p.budgetAlertFraction * 100)} %`
      : 'no daily cap',
    `a start would run: ${provider.describeStart({ name: `auto-${provider.name}-example` })}`,
  ];
  await provider.close();
  return `${lines.join('\n')}\n`;
}
