#!/usr/bin/env node
/**
 * The `tfjs-lsh-attention` executable (package.json "bin"):
 *
 *   npx tfjs-lsh-attention check <model-dir> [--length T] [--hashes 1,2,4,8]
 *
 * Everything is in command.ts; this file only runs it and sets the exit status.
 */
import { runCommand } from './command.js';

void runCommand(process.argv.slice(2)).then((status) => {
  process.exitCode = status;
});
