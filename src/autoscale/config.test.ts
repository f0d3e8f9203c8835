/**
 * Bad autoscaling configuration fails at start with one sentence per problem, naming the variable:
 * schema cross-field checks, then the provider's own check and the worker token.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../config/load-config.js';
import { WorkerRegistry } from '../dispatch/worker-registry.js';
import type { QueueService } from '../scheduler/queue-service.js';
import { StartupError } from '../startup-error.js';
import { CommandProvider } from './command-provider.js';
import { createAutoscaler, describeAutoscale, policyFromConfig } from './index.js';

function problems(env: Record<string, string>): string[] {
  try {
    loadConfig({ DATA_DIR: '/tmp/x', ...env });
    return [];
  } catch (err) {
    return (err as { problems: string[] }).problems;
  }
}

describe('autoscale configuration', () => {
  it('is off by default and needs nothing', () => {
    expect(problems({})).toEqual([]);
    expect(loadConfig({ DATA_DIR: '/tmp/x' }).AUTOSCALE_PROVIDER).toBe('none');
  });

  it('refuses max < min, a money budget without a price, and missing provider settings', () => {
    expect(problems({ AUTOSCALE_MIN_WORKERS: '3', AUTOSCALE_MAX_WORKERS: '2' })).toEqual([
      'AUTOSCALE_MAX_WORKERS: must be at least AUTOSCALE_MIN_WORKERS',
    ]);
    expect(problems({ AUTOSCALE_DAILY_BUDGET: '50' })).toEqual([
      'AUTOSCALE_PRICE_PER_HOUR: is required when AUTOSCALE_DAILY_BUDGET is set',
    ]);
    expect(problems({ AUTOSCALE_PROVIDER: 'local' })).toEqual([
      'AUTOSCALE_WORKER_TOKEN: is required when AUTOSCALE_PROVIDER=local',
      'AUTOSCALE_LOCAL_COMFYUI_URLS: is required when AUTOSCALE_PROVIDER=local',
    ]);
    expect(
      problems({ AUTOSCALE_PROVIDER: 'command', AUTOSCALE_WORKER_TOKEN: 't', AUTOSCALE_COMMAND_UP: 'up' }),
    ).toEqual([
      'AUTOSCALE_COMMAND_DOWN: is required when AUTOSCALE_PROVIDER=command',
      'AUTOSCALE_COMMAND_LIST: is required when AUTOSCALE_PROVIDER=command',
    ]);
    expect(problems({ AUTOSCALE_PROVIDER: 'gcp' })[0]).toMatch(/^AUTOSCALE_PROVIDER: /);
  });

  it('cloud providers need their key, image and instance type; prices must be TYPE=PRICE', () => {
    expect(problems({ AUTOSCALE_PROVIDER: 'verda', AUTOSCALE_WORKER_TOKEN: 't' })).toEqual([
      'AUTOSCALE_VERDA_CLIENT_ID: is required when AUTOSCALE_PROVIDER=verda',
      'AUTOSCALE_VERDA_CLIENT_SECRET: is required when AUTOSCALE_PROVIDER=verda',
      'AUTOSCALE_VERDA_IMAGE: is required when AUTOSCALE_PROVIDER=verda',
      'AUTOSCALE_INSTANCE_TYPE: is required when AUTOSCALE_PROVIDER=verda',
      'AUTOSCALE_WORKER_IMAGE: is required when AUTOSCALE_PROVIDER=verda',
    ]);
    expect(
      problems({
        AUTOSCALE_PROVIDER: 'runpod',
        AUTOSCALE_WORKER_TOKEN: 't',
        AUTOSCALE_WORKER_IMAGE: 'img',
        AUTOSCALE_RUNPOD_GPU_TYPES: 'NVIDIA GeForce RTX 4090',
      }),
    ).toEqual(['AUTOSCALE_RUNPOD_API_KEY: is required when AUTOSCALE_PROVIDER=runpod']);
    expect(problems({ AUTOSCALE_PRICES: 'rtx4090=0.69,a100' })).toEqual([
      'AUTOSCALE_PRICES: expected TYPE=PRICE pairs, got "a100"',
    ]);
    expect(
      loadConfig({ DATA_DIR: '/tmp/x', AUTOSCALE_PRICES: 'rtx4090=0.69, manual=0' }).AUTOSCALE_PRICES,
    ).toEqual({
      rtx4090: 0.69,
      manual: 0,
    });
  });

  it('the budget is the smaller of the hours and the money cap', () => {
    const c = loadConfig({
      DATA_DIR: '/tmp/x',
      AUTOSCALE_DAILY_GPU_HOURS: '10',
      AUTOSCALE_DAILY_BUDGET: '12',
      AUTOSCALE_PRICE_PER_HOUR: '2',
    });
    expect(policyFromConfig(c).dailyBudgetMs).toBe(6 * 3_600_000);
  });

  it('a worker token the server does not know, or a missing script, stops the start with one sentence', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cm-as-'));
    try {
      const base = {
        DATA_DIR: dir,
        AUTOSCALE_PROVIDER: 'command',
        AUTOSCALE_WORKER_TOKEN: 'nope',
        AUTOSCALE_COMMAND_UP: 'true',
        AUTOSCALE_COMMAND_DOWN: 'true',
        AUTOSCALE_COMMAND_LIST: 'true',
      };
      const deps = {
        queue: {} as QueueService,
        workers: new WorkerRegistry(),
        verifyWorkerToken: async (t: string) => (t === 'good' ? 'gpu' : null),
      };
      await expect(createAutoscaler(loadConfig(base), deps)).rejects.toThrow(
        new StartupError(
          'AUTOSCALE_WORKER_TOKEN is not a valid worker token: use one of WORKER_TOKENS or create one with `comfy-multi workers token create NAME`.',
        ),
      );
      await expect(
        createAutoscaler(
          loadConfig({ ...base, AUTOSCALE_WORKER_TOKEN: 'good', AUTOSCALE_COMMAND_UP: `${dir}/up.sh` }),
          deps,
        ),
      ).rejects.toThrow(
        `AUTOSCALE_PROVIDER=command: AUTOSCALE_COMMAND_UP names ${dir}/up.sh, which does not exist.`,
      );
      expect(
        await createAutoscaler(loadConfig({ ...base, AUTOSCALE_WORKER_TOKEN: 'good' }), deps),
      ).not.toBeNull();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('comfy-multi autoscale --dry-run', () => {
  it('prints the policy and the exact start, or the one-sentence problem', async () => {
    const base = {
      DATA_DIR: '/tmp/x',
      PORT: '9000',
      AUTOSCALE_PROVIDER: 'command',
      AUTOSCALE_WORKER_TOKEN: 't',
      AUTOSCALE_COMMAND_UP: '/bin/true up',
      AUTOSCALE_COMMAND_DOWN: 'true',
      AUTOSCALE_COMMAND_LIST: 'true',
      AUTOSCALE_INSTANCE_TYPE: 'rtx4090',
    };
    const out = await describeAutoscale(loadConfig(base));
    expect(out).toContain('provider command (rtx4090), 0-2 workers, agents connect to http://127.0.0.1:9000');
    expect(out).toContain('a start would run: command: WORKER_NAME=auto-command-example');
    expect(await describeAutoscale(loadConfig({ DATA_DIR: '/tmp/x' }))).toMatch(/^Autoscaling is off/);
    await expect(
      describeAutoscale(loadConfig({ ...base, AUTOSCALE_COMMAND_UP: '/nope/up.sh' })),
    ).rejects.toThrow(
      'AUTOSCALE_PROVIDER=command: AUTOSCALE_COMMAND_UP names /nope/up.sh, which does not exist.',
    );
  });
});

describe('command provider', () => {
  it('runs the scripts with the documented variables and reads ids from their output', async () => {
    const p = new CommandProvider({
      up: 'echo "starting $WORKER_NAME for $COMFY_MULTI_SERVER idle=$WORKER_EXIT_WHEN_IDLE_SECONDS"; echo "i-$WORKER_NAME"',
      down: 'test "$WORKER_INSTANCE" = i-w1 && test "$WORKER_NAME" = w1',
      list: 'printf "i-w1 w1\\ni-other\\n"',
      serverUrl: 'http://cp',
      token: 't',
      exitWhenIdleSeconds: 420,
    });
    await p.check();
    expect(await p.start({ name: 'w1' })).toEqual({ id: 'i-w1', name: 'w1' });
    await p.stop('i-w1');
    expect(await p.list()).toEqual([
      { id: 'i-w1', name: 'w1' },
      { id: 'i-other', name: undefined },
    ]);
  });

  it('a failing script is a failure with its last line of stderr (quota, capacity, ...)', async () => {
    const p = new CommandProvider({
      up: 'echo "noise" >&2; echo "QuotaExceeded: 0 of 0 GPUs left in eu-west" >&2; exit 4',
      down: 'true',
      list: 'true',
      serverUrl: 'http://cp',
      token: 't',
      exitWhenIdleSeconds: 60,
    });
    await expect(p.start({ name: 'w' })).rejects.toThrow(
      'the up command exited with 4: QuotaExceeded: 0 of 0 GPUs left in eu-west',
    );
  });
});
