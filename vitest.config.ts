import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts', 'scripts/**/*.test.ts'],
    globalSetup: ['test/support/global-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Real services (redis-server, stand-ins, browsers) make heavy parallelism flaky on 2 cores.
    maxWorkers: 2,
    minWorkers: 1,
  },
});
