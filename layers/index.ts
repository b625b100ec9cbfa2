/**
 * tfjs-lsh-attention layers: tf.layers classes over the functional core.
 * (The file-system IO handler is in `tfjs-lsh-attention/node`.)
 */
export {
  FullSelfAttention,
  LocalSelfAttention,
  LSHSelfAttention,
  SelfAttentionBase,
  fullSelfAttention,
  localSelfAttention,
  lshSelfAttention,
  type AttendOptions,
  type LocalSelfAttentionArgs,
  type LSHSelfAttentionArgs,
  type SelfAttentionArgs,
} from './self_attention.js';
export {
  FullMultiHeadAttention,
  LSHMultiHeadAttention,
  fullMultiHeadAttention,
  lshMultiHeadAttention,
  paddingMaskFromAttentionMask,
  type LSHMultiHeadAttentionArgs,
  type MultiHeadAttentionArgs,
  type MultiHeadAttentionCallOptions,
} from './multihead_attention.js';
export {
  ChunkedFeedForward,
  chunkedFeedForward,
  mapPositionChunks,
  positionDropoutScales,
  type ChunkedFeedForwardArgs,
  type FeedForwardActivation,
  type FeedForwardOptions,
  type FeedForwardSliceOptions,
} from './chunked_feed_forward.js';
export { PositionwiseDense, positionwiseDense, type PositionwiseDenseArgs } from './positionwise_dense.js';
export {
  AxialPositionEmbedding,
  PositionEmbedding,
  axialPositionEmbedding,
  positionEmbedding,
  type AxialCombine,
  type AxialPositionEmbeddingArgs,
  type PositionEmbeddingArgs,
} from './position_embeddings.js';
export { LAYER_NORM_EPSILON, LayerNorm, layerNorm, normalizeLastAxis, type LayerNormArgs } from './layer_norm.js';
export {
  ReversibleStack,
  reversibleStack,
  type ReversibleBlock,
  type ReversibleCombine,
  type ReversibleStackArgs,
  type ReversibleStackOptions,
} from './reversible.js';
export {
  attentionLayers,
  generate,
  lmLoss,
  nextTokenData,
  reformerLM,
  setNHashes,
  type AttentionKind,
  type GenerateOptions,
  type PositionEmbeddingKind,
  type ReformerLMArgs,
} from './lm.js';
export {
  SequencePooling,
  addEncoderHead,
  classificationLoss,
  maskTokens,
  maskedLMLoss,
  reformerEncoder,
  type EncoderHead,
  type EncoderHeadArgs,
  type MaskTokensOptions,
  type Pooling,
  type ReformerEncoderArgs,
  type SequencePoolingArgs,
} from './encoder.js';
export { cachedGenerationSupport, startCachedGeneration, type CachedGeneration } from './generation.js';
export type { DenseWeightArgs, Initializer, InitializerArg, Regularizer, RegularizerArg } from './weight_args.js';
