/**
 * The duplication-task example (Reformer §5) runs end to end in quick mode
 * (a tiny model, a few steps: seconds) and prints its Table 2 layout: a row
 * per attention used in training, a column per attention used in evaluation.
 */
import { execFileSync } from 'node:child_process';
import { expect, it } from 'vitest';

it('20-duplication-task --quick: trains both models and prints the Table 2 layout', () => {
  const out = execFileSync(process.execPath, ['--import', 'tsx', 'examples/20-duplication-task.ts', '--quick'], {
    encoding: 'utf8',
    timeout: 60_000,
    stdio: ['ignore', 'pipe', 'pipe'], // progress goes to stderr
  });
  expect(out).toMatch(/\| Training \\ Evaluation \| Full \| LSH-8 \| LSH-4 \| LSH-2 \| LSH-1 \|/);
  const percent = String.raw`\d{1,3}\.\d%`;
  const cells = Array.from({ length: 5 }, () => percent).join(' \\| ');
  expect(out).toMatch(new RegExp(String.raw`\| Full attention \| ${cells} \|`));
  expect(out).toMatch(new RegExp(String.raw`\| LSH-\d \| ${cells} \|`));
  expect(out).toMatch(/tensors left: 0/);
  expect(out).not.toMatch(/written:/); // quick mode leaves the recorded result alone
});
