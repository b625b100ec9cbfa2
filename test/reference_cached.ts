/**
 * Plain-loop float64 reference of cached LSH attention (the rule of
 * src/cached_attention.ts, written from its statement alone):
 *
 *     keys(p) = { j < p : bucket_r(j) = bucket_r(p) for some round r, j not padding } ∪ { p }
 *
 * each key once; logit q_p · k_j with k_j the normalised key (design §4), and
 * the replaced logit −1e5 for p itself; softmax over keys(p), times values.
 * The buckets come from test/reference.ts's plain-loop hash.
 */
import { REFERENCE_KEY_EPSILON, REFERENCE_SELF_LOGIT, referenceBuckets, type ReferenceNBuckets, type Vector } from './reference.js';

/** Inputs of {@link referenceCachedLSH}. */
export interface ReferenceCachedInput {
  /** [B][H][T] shared query/key vectors (length D) of every position, prompt and new ones. */
  qk: Vector[][][];
  /** [B][H][T] values. */
  v: Vector[][][];
  /** [D][R][Σ Ki/2] rotations. */
  rotations: Vector[][];
  nBuckets: ReferenceNBuckets;
  /** [B][T] 1 keep, 0 padding (only prompt positions may be padding); null for none. */
  mask: Vector[] | null;
  /** Positions 0 … promptLength − 1 are the prompt; the others are generated one by one. */
  promptLength: number;
}

/** The cached-path outputs of the new positions: [B][H][T − promptLength][Dv]. */
export function referenceCachedLSH(input: ReferenceCachedInput): number[][][][] {
  const buckets = referenceBuckets(input.qk, input.rotations, input.nBuckets, input.mask); // [B][H][R][T]
  return input.qk.map((perBatch, b) =>
    perBatch.map((perHead, h) => {
      const length = perHead.length;
      const outputs: number[][] = [];
      for (let p = input.promptLength; p < length; p++) {
        const keys: number[] = [];
        for (let j = 0; j < p; j++) {
          if (input.mask !== null && input.mask[b][j] === 0) continue;
          if (buckets[b][h].some((round) => round[j] === round[p])) keys.push(j);
        }
        outputs.push(softmaxAttend(perHead[p], keys.map((j) => perHead[j]), input.v[b][h], keys, p));
      }
      return outputs;
    }),
  );
}

/** Outputs of causal full attention for the new positions (every earlier unpadded key): [B][H][T − promptLength][Dv]. */
export function referenceCachedFull(input: Omit<ReferenceCachedInput, 'rotations' | 'nBuckets'>): number[][][][] {
  return input.qk.map((perBatch, b) =>
    perBatch.map((perHead, h) => {
      const outputs: number[][] = [];
      for (let p = input.promptLength; p < perHead.length; p++) {
        const keys: number[] = [];
        for (let j = 0; j < p; j++) if (input.mask === null || input.mask[b][j] !== 0) keys.push(j);
        outputs.push(softmaxAttend(perHead[p], keys.map((j) => perHead[j]), input.v[b][h], keys, p));
      }
      return outputs;
    }),
  );
}

function softmaxAttend(query: Vector, keyVectors: Vector[], values: Vector[], keys: number[], self: number): number[] {
  const logits = keyVectors.map((x) => {
    const dim = x.length;
    let meanSquare = 0;
    for (let d = 0; d < dim; d++) meanSquare += x[d] * x[d];
    const scale = 1 / Math.sqrt(meanSquare / dim + REFERENCE_KEY_EPSILON) / Math.sqrt(dim);
    let dot = 0;
    for (let d = 0; d < dim; d++) dot += query[d] * x[d] * scale;
    return dot;
  });
  logits.push(REFERENCE_SELF_LOGIT);
  const positions = [...keys, self];
  const max = Math.max(...logits);
  const weights = logits.map((l) => Math.exp(l - max));
  const total = weights.reduce((a, w) => a + w, 0);
  const out = new Array<number>(values[0].length).fill(0);
  positions.forEach((j, c) => {
    for (let e = 0; e < out.length; e++) out[e] += (weights[c] / total) * values[j][e];
  });
  return out;
}
