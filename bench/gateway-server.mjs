/**
 * The control plane for bench/gateway.ts, in its own process so its RSS is measured alone, and
 * run as production runs it: the compiled JavaScript in dist/ (`npm run build`), without tsx.
 * Configured by environment; answers `{type: 'rss'}`, `{type: 'reset'}` (restarts the event-loop
 * delay histogram) and `{type: 'stop'}` over IPC.
 */
import { existsSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';

const main = new URL('../dist/main.js', import.meta.url);
if (!existsSync(main)) {
  console.error('bench/gateway-server.mjs: dist/ is missing; run `npm run build` first');
  process.exit(2);
}
const { loadConfig } = await import(new URL('../dist/config/load-config.js', import.meta.url).href);
const { startServer } = await import(main.href);

const server = await startServer(loadConfig(process.env));
const loop = monitorEventLoopDelay({ resolution: 10 });
loop.enable();
process.send?.({ type: 'ready', url: server.url });
process.on('message', (m) => {
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
