/**
 * "GPU starting, about N s": a participant who queues into a cold system is told a GPU is on its
 * way, with the ETA from measured start times (none before the first measurement, never a guess),
 * in `/<user>/comfy-multi/status` and the banner text the workshop extension shows.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { startHarness, type Harness } from '../../test/support/app-harness.js';
import { commandProviderEnv } from '../../test/support/autoscale.js';
import { modelFreePrompt } from '../../test/support/prompts.js';
import { WORKSHOP_EXTENSION_JS } from '../gateway/workshop-extension.js';

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

/** The banner's own `describe(status)` from the served extension (plain browser JavaScript). */
function bannerText(status: unknown): string {
  const src = WORKSHOP_EXTENSION_JS;
  const fn = (name: string) => {
    const start = src.indexOf(`function ${name}(`);
    const end = src.indexOf('\n}\n', start);
    return src.slice(start, end + 2);
  };
  return new Function('s', `${fn('minutes')}\n${fn('describe')}\nreturn describe(s);`)(status) as string;
}

describe('GPU starting', () => {
  it('tells the waiting participant a GPU is starting, with the measured ETA once there is one', async () => {
    // A command provider whose instances never register: the GPU stays "starting".
    h = await startHarness({
      WORKER_TOKENS: 'auto:tok',
      ...commandProviderEnv('tok', { AUTOSCALE_COMMAND_LIST: 'echo i-1', AUTOSCALE_INTERVAL_SECONDS: '1' }),
    });
    const auth = await h.addUser('user001');
    const status = async () =>
      (
        await h!.app.inject({
          method: 'GET',
          url: '/user001/comfy-multi/status',
          headers: { authorization: auth },
        })
      ).json();

    expect((await status()).gpu.starting).toBeNull();
    expect(bannerText(await status())).toMatch(/^No GPU is online right now/);

    await h.services.queue.enqueue({ user: 'user001', prompt: modelFreePrompt() });
    const until = Date.now() + 10_000;
    let s = await status();
    while (!s.gpu.starting && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 50));
      s = await status();
    }
    expect(s.gpu.starting).toEqual({ etaSeconds: null });
    expect(bannerText(s)).toMatch(/^GPU starting: your prompts wait in the queue/);

    // Measured starts of this provider and type (median 90 s): the ETA counts down from it.
    for (const ms of [60_000, 90_000, 120_000]) await h.services.autoscaler!.startTimes.add(ms);
    s = await status();
    expect(s.gpu.starting.etaSeconds).toBeGreaterThan(80);
    expect(s.gpu.starting.etaSeconds).toBeLessThanOrEqual(90);
    expect(bannerText(s)).toMatch(/^GPU starting, about (8\d|90) s: your prompts wait/);
    // Kept for the next start (and the next server).
    expect(await h.services.store.getBlob('autoscale', 'start-times/command/command')).toBe(
      '[60000,90000,120000]',
    );
  });

  it('the banner says so beside online GPUs too', () => {
    const s = { gpu: { online: true, workers: 1, starting: { etaSeconds: 42 } }, running: 1, pending: 0 };
    expect(bannerText(s)).toBe('GPU online (1), another starting, about 42 s · running: 1');
  });
});
