import { defineConfig } from 'vitest/config';

// Preact's automatic JSX runtime through esbuild: no Babel, no extra plugin.
export default defineConfig({
  esbuild: { jsx: 'automatic', jsxImportSource: 'preact' },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    // The binary embeds every file of dist/: no source maps in it.
    sourcemap: false,
    target: 'es2022',
    reportCompressedSize: true,
  },
  test: {
    environment: 'happy-dom',
    include: ['test/**/*.test.{ts,tsx}'],
  },
});
