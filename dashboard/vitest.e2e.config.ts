import { defineConfig } from 'vitest/config';

// The end-to-end suite: the real sentry binary, a real store and headless Chromium. One file
// at a time (they share the machine's two cores with the browser and sentry). With
// SENTRY_UI_BENCH=1 it runs the speed measurements instead (`cargo xtask bench dashboard`).
export default defineConfig({
  test: {
    environment: 'node',
    include: process.env.SENTRY_UI_BENCH === '1' ? ['e2e/perf.bench.ts'] : ['e2e/**/*.test.ts'],
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 60_000,
  },
});
