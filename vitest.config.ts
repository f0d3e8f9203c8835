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
    // One real ComfyUI (COMFYUI_URL) runs one prompt at a time: suites run side by side queue
    // behind each other's jobs there and time out waiting for their own. One file at a time.
    fileParallelism: !process.env.COMFYUI_URL,
  },
});
