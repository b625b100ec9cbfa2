/**
 * The duplication-task example (Reformer §5) in quick mode (T = 16, 5
 * symbols, 60 steps: about 15 s) learns the task and prints its Table 2
 * layout: a row per attention used in training, a column per attention used
 * in evaluation.
 *
 * The bounds, measured over seeds 1-10 of quick mode (wasm): the Full,
 * LSH-8, LSH-4 and LSH-2 columns were 91.1-100% in both rows, LSH-1 67.0-96.0%
 * (seed 1, the default: 100/100/100/95.1/84.4% and 99.1/99.1/98.2/98.7/67.0%).
 * Chance is 20%; a model that does not attend back |w| + 1 positions stays
 * there (the former quick mode, T = 32, 7 symbols, 12 steps, did: 7.5-21.7%
 * over seeds 1-6 against a chance of 14.3%).
 */
import { execFileSync } from 'node:child_process';
import { expect, it } from 'vitest';

/** Lowest accuracy allowed per column: Full, LSH-8, LSH-4, LSH-2, LSH-1. */
const FLOORS = [0.8, 0.8, 0.8, 0.8, 0.5];

it('20-duplication-task --quick: both models learn the task (every cell far above chance) and the Table 2 layout prints', () => {
  const out = execFileSync(process.execPath, ['--import', 'tsx', 'examples/20-duplication-task.ts', '--quick'], {
    encoding: 'utf8',
    timeout: 120_000,
    stdio: ['ignore', 'pipe', 'pipe'], // progress goes to stderr
  });
  expect(out).toMatch(/chance 20\.0%/);
  expect(out).toMatch(/\| Training \\ Evaluation \| Full \| LSH-8 \| LSH-4 \| LSH-2 \| LSH-1 \|/);
  for (const row of ['Full attention', 'LSH-2']) {
    const line = out.split('\n').find((l) => l.startsWith(`| ${row} |`));
    expect(line, `the ${row} row`).toBeDefined();
    const cells = (line as string).split('|').slice(2, -1).map((cell) => Number(cell.trim().replace('%', '')) / 100);
    expect(cells).toHaveLength(FLOORS.length);
    cells.forEach((accuracy, i) => {
      expect(accuracy, `${row} row, column ${i}`).toBeGreaterThanOrEqual(FLOORS[i]);
      expect(accuracy).toBeLessThanOrEqual(1);
    });
  }
  expect(out).toMatch(/tensors left: 0/);
  expect(out).not.toMatch(/written:/); // quick mode leaves the recorded result alone
});
