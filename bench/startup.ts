/**
 * Start-up benchmark: how long `npm start` (the compiled server, `node bin/comfy-multi.js serve`)
 * takes from spawn to its first `200` on `/health`, on a first start (fresh DATA_DIR: migrations and
 * the instructor account) and on a restart (existing DATA_DIR). A restart must stay far inside the
 * 30 s job lease so connected workers keep their jobs. Figures are medians and maxima over runs.
 * Run alone: `npx tsx bench/startup.ts` (env BENCH_STARTUP_RUNS, default 5).
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { median } from './stats.js';

const BIN = fileURLToPath(new URL('../bin/comfy-multi.js', import.meta.url));

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

/** Milliseconds from spawn to the first healthy answer; the process is stopped afterwards. */
async function timeToHealthy(dataDir: string): Promise<number> {
  const port = await freePort();
  const t0 = performance.now();
  const child = spawn(process.execPath, [BIN, 'serve'], {
    env: {
      ...process.env,
      DATA_DIR: dataDir,
      PORT: String(port),
      HOST: '127.0.0.1',
      LOG_LEVEL: 'warn',
      ADMIN_PASSWORD: 'bench-password-123',
    },
    stdio: 'ignore',
  });
  try {
    for (;;) {
      if (child.exitCode !== null) throw new Error(`the server exited with ${child.exitCode}`);
      if (performance.now() - t0 > 30_000) throw new Error('the server did not answer /health in 30 s');
      const ok = await fetch(`http://127.0.0.1:${port}/health`).then(
        (r) => r.ok,
        () => false,
      );
      if (ok) return performance.now() - t0;
      await sleep(10);
    }
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => (child.exitCode !== null ? r(null) : child.once('exit', r)));
  }
}

export async function benchStartup(): Promise<Record<string, number>> {
  const runs = Number(process.env.BENCH_STARTUP_RUNS ?? 5);
  const first: number[] = [];
  const again: number[] = [];
  for (let i = 0; i < runs; i++) {
    const dir = await mkdtemp(join(tmpdir(), 'cm-startup-'));
    try {
      first.push(await timeToHealthy(dir));
      again.push(await timeToHealthy(dir));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
  const r = (x: number) => Math.round(x);
  return {
    first_start_median_ms: r(median(first)),
    first_start_max_ms: r(Math.max(...first)),
    restart_median_ms: r(median(again)),
    restart_max_ms: r(Math.max(...again)),
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  console.log(await benchStartup());
}
