/**
 * tfjs-lsh-attention layers: tf.layers classes over the functional core.
 * (The file-system IO handler is in `tfjs-lsh-attention/node`.)
 */
export {
  FullSelfAttention,
  LSHSelfAttention,
  SelfAttentionBase,
  fullSelfAttention,
  lshSelfAttention,
  type AttendOptions,
  type LSHSelfAttentionArgs,
  type SelfAttentionArgs,
} from './self_attention.js';
