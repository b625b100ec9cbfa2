/**
 * Equivalence testing for your own models (`tfjs-lsh-attention/testing`),
 * for any test framework (vitest, jest, mocha, node:test) or none:
 *
 * - {@link fullAttentionTwin} / {@link exactLSH}: copies of a model whose LSH
 *   attention layers are full attention with the same weights, or LSH with
 *   one chunk per round (exactly full attention by construction);
 * - {@link checkEquivalence} / {@link expectEquivalent}: at small T, the model
 *   in exact mode against its twin (outputs, each attention layer, loss
 *   gradients of every weight);
 * - {@link approximationReport}: at the real T, each number of hash rounds
 *   against the twin (relative error, loss, time, peak memory).
 *
 * The `tfjs-lsh-attention check <model-dir>` command runs both on a saved model.
 */
import '../index.js'; // registers the layers, so saved models that use them load
export { LSH_ONLY_ARGS, exactLSH, fullAttentionTwin } from './twins.js';
export {
  DEFAULT_GRADIENT_TOLERANCE,
  DEFAULT_TOLERANCE,
  checkEquivalence,
  expectEquivalent,
  type CheckEquivalenceOptions,
  type Difference,
  type EquivalenceReport,
  type GradientDifference,
  type LayerDifference,
  type OutputDifference,
} from './equivalence.js';
export {
  approximationReport,
  approximationVerdict,
  formatApproximationTable,
  type ApproximationOptions,
  type ApproximationReport,
  type ApproximationRow,
  type Cost,
} from './approximation.js';
export { modelLengths, ownLength, randomInputs, type ModelInputs, type ModelLengths, type RandomInputsOptions } from './inputs.js';
export type { OutputLoss } from './compare.js';
