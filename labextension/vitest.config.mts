import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', 'test/**/*.test.tsx'],
    // Each test talks to a real server subprocess; reconnections take real time.
    testTimeout: 20_000,
    hookTimeout: 40_000
  }
});
