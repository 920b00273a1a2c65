import { defineConfig } from 'vitest/config';

// The end-to-end suite: the real sentry binary, a real store and headless Chromium.
// One file at a time (they share the machine's two cores with the browser and sentry).
export default defineConfig({
  test: {
    environment: 'node',
    include: ['e2e/**/*.test.ts'],
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
