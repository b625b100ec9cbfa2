// Run: npx tsx bench/render.ts bench/results/attention-wasm.json
// Re-renders a sweep's markdown table and chart from its JSON file (no re-measuring).
import { readFileSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import type { SweepReport } from './report.js';
import { writeReport } from './report.js';

const path = process.argv[2];
if (path === undefined) throw new Error('bench/render: give the JSON file of a sweep, e.g. bench/results/attention-wasm.json');
const report = JSON.parse(readFileSync(path, 'utf8')) as SweepReport;
for (const point of report.points) {
  // Older files listed custom-gradient scopes, whose time is their inner kernels'.
  if (point.kernels) point.kernels = point.kernels.filter((k) => k.name !== 'unnamed scope');
}
const written = await writeReport(report, dirname(path), basename(path, '.json'));
console.log(`written: ${written.join(', ')}`);
