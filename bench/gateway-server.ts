/**
 * The control plane for bench/gateway.ts, in its own process so its RSS is measured alone. Started
 * with `fork()` (tsx loaded); configured by environment; answers `{type: 'rss'}`, `{type: 'reset'}`
 * (restarts the event-loop delay histogram) and `{type: 'stop'}` over IPC.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { loadConfig } from '../src/config/load-config.js';
import { startServer } from '../src/main.js';

const server = await startServer(loadConfig(process.env));
const loop = monitorEventLoopDelay({ resolution: 10 });
loop.enable();
process.send?.({ type: 'ready', url: server.url });
process.on('message', (m: { type?: string }) => {
  if (m.type === 'rss') {
    const mem = process.memoryUsage();
    process.send?.({
      type: 'rss',
      rss: mem.rss,
      heapUsed: mem.heapUsed,
      loopP99Ms: loop.percentile(99) / 1e6,
      loopMaxMs: loop.max / 1e6,
    });
  } else if (m.type === 'reset') {
    loop.reset();
    process.send?.({ type: 'reset' });
  } else if (m.type === 'stop') {
    void server.close().finally(() => process.exit(0));
  }
});
