import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // One thread unless a test starts the pool itself (test/threads.test.ts): starting workers in every file would cost seconds each.
    env: { TFJS_THREADS: '1' },
  },
});
