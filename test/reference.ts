/**
 * An independent plain-loop float64 reference of shared/design/lsh-attention.md
 * (sections 1-5, 7 and 8), written from the spec alone: no tensor ops, only
 * JavaScript numbers, so it checks the tensor core rather than restating it.
 *
 * Legend: B batch, H heads, T length, D head size, Dv value size,
 * R rounds (nHashes), K buckets (Π Ki when factorised), C chunkLength.
 */

/** One vector: a plain array or a typed array. */
export type Vector = ArrayLike<number>;

/** Bucket count K, or its even factors [K1, K2, …] (spec §8). */
export type ReferenceNBuckets = number | readonly number[];

/** Masked logit: causal future or padded key (spec §4). */
export const REFERENCE_MASKED_LOGIT = -1e9;
/** Self logit: a token attends to itself only when nothing else is allowed (spec §4). */
export const REFERENCE_SELF_LOGIT = -1e5;
/** Added to mean(x²) before the key normalisation (spec §4). */
export const REFERENCE_KEY_EPSILON = 1e-6;

/** Inputs of {@link referenceFullAttention}. */
export interface ReferenceAttentionInput {
  /** [B][H][T] vectors of length D: the shared query/key vectors. */
  qk: readonly (readonly (readonly Vector[])[])[];
  /** [B][H][T] vectors of length Dv. */
  v: readonly (readonly (readonly Vector[])[])[];
  /** Keys after a query are masked. */
  causal: boolean;
  /** [B][T], 1 keep, 0 padding; null for none. */
  mask: readonly Vector[] | null;
}

/** Inputs of {@link referenceLSHAttention}. */
export interface ReferenceLSHInput extends ReferenceAttentionInput {
  /** [D][R] vectors of length Σ Ki/2 (K/2 for one factor). */
  rotations: readonly (readonly Vector[])[];
  /** K, or its factors. */
  nBuckets: ReferenceNBuckets;
  /** C; R·T must be a multiple of it. */
  chunkLength: number;
  /** Chunks before each chunk that it also attends to. */
  numChunksBefore: number;
  /** Chunks after each chunk that it also attends to. */
  numChunksAfter: number;
  /**
   * false: reformer-pytorch's `allow_duplicate_attention=False`: subtract
   * log(count + 1e-9) from every logit (after the masks), count = the rounds
   * r in which the key's round-r item lies in the window of the query's
   * round-r item (and, without attendAcrossBuckets, in its bucket). Default true.
   */
  allowDuplicateAttention?: boolean;
  /** false: reformer-pytorch's `attend_across_buckets=False`: a key of another (round, bucket) is masked (−1e9), after the self mask. Default true. */
  attendAcrossBuckets?: boolean;
}

function factorsOf(nBuckets: ReferenceNBuckets): number[] {
  const factors = typeof nBuckets === 'number' ? [nBuckets] : [...nBuckets];
  if (factors.length === 0 || factors.some((k) => !Number.isInteger(k) || k < 2 || k % 2 !== 0)) {
    throw new Error(`reference: nBuckets must be even (or a list of even factors), got ${JSON.stringify(nBuckets)}`);
  }
  return factors;
}

function dot(a: Vector, b: Vector): number {
  let sum = 0;
  for (let d = 0; d < a.length; d++) sum += a[d] * b[d];
  return sum;
}

/** k = x / sqrt(mean(x²) + 1e-6) / sqrt(D): unit length. */
function normaliseKey(x: Vector): Float64Array {
  const dim = x.length;
  let meanSquare = 0;
  for (let d = 0; d < dim; d++) meanSquare += x[d] * x[d];
  meanSquare /= dim;
  const scale = 1 / Math.sqrt(meanSquare + REFERENCE_KEY_EPSILON) / Math.sqrt(dim);
  const k = new Float64Array(dim);
  for (let d = 0; d < dim; d++) k[d] = x[d] * scale;
  return k;
}

function isPadded(mask: readonly Vector[] | null, b: number, position: number): boolean {
  return mask !== null && mask[b][position] === 0;
}

/** The bucket of one unpadded vector in round r, and its argmax margin (best minus runner-up, smallest over factors). */
function hashOne(x: Vector, rotations: readonly (readonly Vector[])[], round: number, factors: number[]): { bucket: number; margin: number } {
  let bucket = 0;
  let radix = 1;
  let offset = 0;
  let margin = Infinity;
  for (const k of factors) {
    const half = k / 2;
    // [x·R_i ; −x·R_i], argmax with the first maximum winning ties.
    const scores = new Float64Array(k);
    for (let j = 0; j < half; j++) {
      let projection = 0;
      for (let d = 0; d < x.length; d++) projection += x[d] * rotations[d][round][offset + j];
      scores[j] = projection;
      scores[half + j] = -projection;
    }
    let best = 0;
    for (let j = 1; j < k; j++) if (scores[j] > scores[best]) best = j;
    let runnerUp = -Infinity;
    for (let j = 0; j < k; j++) if (j !== best) runnerUp = Math.max(runnerUp, scores[j]);
    margin = Math.min(margin, scores[best] - runnerUp);
    bucket += best * radix;
    radix *= k;
    offset += half;
  }
  return { bucket, margin };
}

/** Shape checks shared by hashing and attention. */
function checkRotations(qk: ReferenceAttentionInput['qk'], rotations: ReferenceLSHInput['rotations'], factors: number[]): number {
  const dim = qk[0][0][0].length;
  const columns = factors.reduce((a, k) => a + k / 2, 0);
  if (rotations.length !== dim) throw new Error(`reference: rotations need D = ${dim} rows, got ${rotations.length}`);
  const nHashes = rotations[0].length;
  for (const row of rotations) {
    if (row.length !== nHashes) throw new Error('reference: rotations must be [D][R][Σ Ki/2]');
    for (const cols of row) {
      if (cols.length !== columns) throw new Error(`reference: rotations need Σ Ki/2 = ${columns} columns, got ${cols.length}`);
    }
  }
  return nHashes;
}

/**
 * Buckets of every vector in every round (spec §1, §8).
 * @returns [B][H][R][T] integers in [0, K), or K at padded positions.
 */
export function referenceBuckets(
  qk: ReferenceAttentionInput['qk'],
  rotations: ReferenceLSHInput['rotations'],
  nBuckets: ReferenceNBuckets,
  mask: readonly Vector[] | null = null,
): number[][][][] {
  return referenceHash(qk, rotations, nBuckets, mask).buckets;
}

/**
 * Smallest argmax margin (best score minus runner-up) over every unpadded
 * vector, round and factor. Tests use it to stay clear of near-ties, where a
 * float32 projection may legitimately pick the other bucket.
 */
export function referenceHashMargin(
  qk: ReferenceAttentionInput['qk'],
  rotations: ReferenceLSHInput['rotations'],
  nBuckets: ReferenceNBuckets,
  mask: readonly Vector[] | null = null,
): number {
  return referenceHash(qk, rotations, nBuckets, mask).margin;
}

function referenceHash(
  qk: ReferenceAttentionInput['qk'],
  rotations: ReferenceLSHInput['rotations'],
  nBuckets: ReferenceNBuckets,
  mask: readonly Vector[] | null,
): { buckets: number[][][][]; margin: number } {
  const factors = factorsOf(nBuckets);
  const totalBuckets = factors.reduce((a, k) => a * k, 1);
  const nHashes = checkRotations(qk, rotations, factors);
  let margin = Infinity;
  const buckets = qk.map((perBatch, b) =>
    perBatch.map((perHead) => {
      const rounds: number[][] = [];
      for (let r = 0; r < nHashes; r++) {
        rounds.push(
          perHead.map((x, i) => {
            if (isPadded(mask, b, i)) return totalBuckets; // padding sorts last
            const hashed = hashOne(x, rotations, r, factors);
            margin = Math.min(margin, hashed.margin);
            return hashed.bucket;
          }),
        );
      }
      return rounds;
    }),
  );
  return { buckets, margin };
}

/** Logit of query position i against key position p (spec §4: masks replace logits). */
function maskedLogit(
  query: Vector,
  key: Float64Array,
  i: number,
  p: number,
  b: number,
  causal: boolean,
  mask: readonly Vector[] | null,
): number {
  let logit = dot(query, key);
  if (causal && p > i) logit = REFERENCE_MASKED_LOGIT;
  if (isPadded(mask, b, p)) logit = REFERENCE_MASKED_LOGIT;
  if (p === i) logit = REFERENCE_SELF_LOGIT;
  return logit;
}

/** logsumexp of the logits and softmax · values over key positions (duplicates counted). */
function attend(logits: number[], keyPositions: number[], values: readonly Vector[], valueSize: number): { lse: number; out: Float64Array } {
  let max = -Infinity;
  for (const l of logits) max = Math.max(max, l);
  let sum = 0;
  const out = new Float64Array(valueSize);
  logits.forEach((l, n) => {
    const w = Math.exp(l - max);
    sum += w;
    const value = values[keyPositions[n]];
    for (let d = 0; d < valueSize; d++) out[d] += w * value[d];
  });
  for (let d = 0; d < valueSize; d++) out[d] /= sum;
  return { lse: max + Math.log(sum), out };
}

/**
 * Full attention (spec §7): the LSH logits and masks over all T keys.
 * @returns [B][H][T][Dv].
 */
export function referenceFullAttention(input: ReferenceAttentionInput): number[][][][] {
  const { qk, v, causal, mask } = input;
  return qk.map((perBatch, b) =>
    perBatch.map((vectors, h) => {
      const values = v[b][h];
      const valueSize = values[0].length;
      const keys = vectors.map(normaliseKey);
      const positions = vectors.map((_, p) => p);
      return vectors.map((query, i) => {
        const logits = keys.map((key, p) => maskedLogit(query, key, i, p, b, causal, mask));
        return Array.from(attend(logits, positions, values, valueSize).out);
      });
    }),
  );
}

/**
 * Shared-QK LSH attention (spec §1-5, §8), literally: hash, stable sort on
 * bucket + r·(K+1) over the R·T round-major items, chunks of C attending to
 * themselves and their rolling neighbours, per-round logsumexp and softmax·v,
 * then rounds combined by their logsumexp weights.
 * @returns [B][H][T][Dv].
 */
export function referenceLSHAttention(input: ReferenceLSHInput): number[][][][] {
  return referenceLSHAttentionWithWeights(input).output;
}

/** An output [B][H][T][Dv] and the attention weights [B][H][T][T] (query row, key column) combined over rounds. */
export interface ReferenceWithWeights {
  output: number[][][][];
  weights: number[][][][];
}

/**
 * {@link referenceLSHAttention}, also returning each query's weight on every
 * key position: Σ over rounds of the round weight times the softmax weights
 * of the key's appearances in that round's window.
 */
export function referenceLSHAttentionWithWeights(input: ReferenceLSHInput): ReferenceWithWeights {
  const { qk, v, rotations, nBuckets, chunkLength, numChunksBefore, numChunksAfter, causal, mask } = input;
  const allowDuplicates = input.allowDuplicateAttention ?? true;
  const acrossBuckets = input.attendAcrossBuckets ?? true;
  const factors = factorsOf(nBuckets);
  const totalBuckets = factors.reduce((a, k) => a * k, 1);
  const buckets = referenceBuckets(qk, rotations, factors, mask);
  const nHashes = rotations[0].length;
  const weightsOut: number[][][][] = [];
  const output = qk.map((perBatch, b) =>
    perBatch.map((vectors, h) => {
      const length = vectors.length;
      const values = v[b][h];
      const valueSize = values[0].length;
      const items = nHashes * length;
      if (items % chunkLength !== 0) {
        throw new Error(`reference: R·T = ${items} must be a multiple of chunkLength ${chunkLength}`);
      }
      const keys = vectors.map(normaliseKey);

      // §2: item t = r·T + i; stable sort on bucket + r·(K+1) (ties keep item order).
      const sortKey = (t: number): number => {
        const r = Math.floor(t / length);
        return buckets[b][h][r][t % length] + r * (totalBuckets + 1);
      };
      const sorted = Array.from({ length: items }, (_, t) => t).sort((s, t) => sortKey(s) - sortKey(t) || s - t);

      // §3, §4, §5 per round: lse_r and o_r of every (round, position).
      const nChunks = items / chunkLength;
      const lse: number[][] = Array.from({ length: nHashes }, () => new Array<number>(length).fill(NaN));
      const out: Float64Array[][] = Array.from({ length: nHashes }, () => new Array<Float64Array>(length));
      // Per (round, query): the key positions of its window and their softmax weights (duplicates listed each time).
      const seen: Array<Array<{ keys: number[]; weights: number[] }>> = Array.from({ length: nHashes }, () => new Array(length));
      const chunkOfItem = new Array<number>(items);
      sorted.forEach((t, place) => (chunkOfItem[t] = Math.floor(place / chunkLength)));
      const windowOf = (chunk: number): number[] => {
        const chunks: number[] = [];
        for (let offset = -numChunksBefore; offset <= numChunksAfter; offset++) chunks.push((((chunk + offset) % nChunks) + nChunks) % nChunks);
        return chunks;
      };
      const bucketOf = (t: number): number => buckets[b][h][Math.floor(t / length)][t % length];
      // The duplicate count of reformer-pytorch: rounds in which key p's item is in the window of query i's item.
      const duplicateCount = (i: number, p: number): number => {
        let count = 0;
        for (let r = 0; r < nHashes; r++) {
          const inWindow = windowOf(chunkOfItem[r * length + i]).includes(chunkOfItem[r * length + p]);
          if (inWindow && (acrossBuckets || bucketOf(r * length + i) === bucketOf(r * length + p))) count++;
        }
        return count;
      };
      for (let chunk = 0; chunk < nChunks; chunk++) {
        const keyItems: number[] = [];
        for (const other of windowOf(chunk)) {
          // rolls over the whole axis
          for (let n = 0; n < chunkLength; n++) keyItems.push(sorted[other * chunkLength + n]);
        }
        const keyPositions = keyItems.map((t) => t % length);
        for (let n = 0; n < chunkLength; n++) {
          const item = sorted[chunk * chunkLength + n];
          const r = Math.floor(item / length);
          const i = item % length;
          const logits = keyItems.map((t, k) => {
            const p = keyPositions[k];
            let logit = maskedLogit(vectors[i], keys[p], i, p, b, causal, mask);
            if (!acrossBuckets && (Math.floor(t / length) !== r || bucketOf(t) !== bucketOf(item))) logit = REFERENCE_MASKED_LOGIT;
            if (!allowDuplicates) logit -= Math.log(duplicateCount(i, p) + 1e-9);
            return logit;
          });
          const attended = attend(logits, keyPositions, values, valueSize);
          lse[r][i] = attended.lse;
          out[r][i] = attended.out;
          seen[r][i] = { keys: keyPositions, weights: logits.map((l) => Math.exp(l - attended.lse)) };
        }
      }

      // §5: o = Σ_r exp(lse_r − logsumexp_r(lse_r)) · o_r.
      const dense: number[][] = vectors.map(() => new Array<number>(length).fill(0));
      (weightsOut[b] ??= [])[h] = dense;
      return vectors.map((_, i) => {
        let max = -Infinity;
        for (let r = 0; r < nHashes; r++) max = Math.max(max, lse[r][i]);
        let sum = 0;
        for (let r = 0; r < nHashes; r++) sum += Math.exp(lse[r][i] - max);
        const total = max + Math.log(sum);
        const combined = new Array<number>(valueSize).fill(0);
        for (let r = 0; r < nHashes; r++) {
          const weight = Math.exp(lse[r][i] - total);
          for (let d = 0; d < valueSize; d++) combined[d] += weight * out[r][i][d];
          seen[r][i].keys.forEach((p, k) => (dense[i][p] += weight * seen[r][i].weights[k]));
        }
        return combined;
      });
    }),
  );
  return { output, weights: weightsOut };
}

/**
 * Full attention (spec §7) restricted to a band, with its weights: query i
 * sees key j only when ⌊j/C⌋ is in [⌊i/C⌋ − before, ⌊i/C⌋ + after] (keys
 * outside are masked, −1e9): what local attention computes.
 * @returns output [B][H][T][Dv] and weights [B][H][T][T].
 */
export function referenceBandAttention(
  input: ReferenceAttentionInput & { chunkLength: number; numChunksBefore: number; numChunksAfter: number },
): ReferenceWithWeights {
  const { qk, v, causal, mask, chunkLength, numChunksBefore, numChunksAfter } = input;
  const weights: number[][][][] = [];
  const output = qk.map((perBatch, b) =>
    perBatch.map((vectors, h) => {
      const values = v[b][h];
      const keys = vectors.map(normaliseKey);
      const positions = vectors.map((_, p) => p);
      const rows: number[][] = [];
      (weights[b] ??= [])[h] = rows;
      return vectors.map((query, i) => {
        const chunk = Math.floor(i / chunkLength);
        const logits = keys.map((key, p) => {
          const keyChunk = Math.floor(p / chunkLength);
          if (keyChunk < chunk - numChunksBefore || keyChunk > chunk + numChunksAfter) return REFERENCE_MASKED_LOGIT;
          return maskedLogit(query, key, i, p, b, causal, mask);
        });
        const attended = attend(logits, positions, values, values[0].length);
        rows.push(logits.map((l) => Math.exp(l - attended.lse)));
        return Array.from(attended.out);
      });
    }),
  );
  return { output, weights };
}
