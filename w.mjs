import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
await tf.setBackend(process.argv[2]||'wasm'); await tf.ready();
const N=8*16384;
const x=tf.randomNormal([N,64]); const idx=tf.tensor1d(Array.from({length:4*N},(_, i)=> (i*7919)%(N)),'int32');
const idx2=idx.reshape([4*N,1]);
for (let i=0;i<3;i++){ const s=performance.now(); const g=tf.gatherND(x,idx2); await g.data(); console.log('gatherND', performance.now()-s); g.dispose();}
const x3=x.reshape([N,1,64]);
for (let i=0;i<2;i++){ const s=performance.now(); const g=tf.gather(x3,idx); await g.data(); console.log('gather3', performance.now()-s); g.dispose();}
// slice from a view
const big = tf.randomNormal([65536,64]);
for (let i=0;i<2;i++){ const s=performance.now(); const parts=tf.split(big, 1024, 0); await parts[99].data(); console.log('split 1024', performance.now()-s); parts.forEach(p=>p.dispose());}
const b3=big.reshape([1024,64,64]);
for (let i=0;i<2;i++){ const s=performance.now(); const parts=tf.unstack(b3); await parts[99].data(); console.log('unstack 1024', performance.now()-s); parts.forEach(p=>p.dispose());}
// batched matmul vs per-chunk
const q=tf.randomNormal([1024,64,64]); const k=tf.randomNormal([1024,64,128]);
for (let i=0;i<2;i++){ const s=performance.now(); const r=tf.matMul(q,k); await r.data(); const ms=performance.now()-s; console.log('batched mm', ms, (2*1024*64*64*128/ms/1e6).toFixed(2),'GF'); r.dispose();}
const qs=tf.unstack(q), ks=tf.unstack(k);
for (let i=0;i<2;i++){ const s=performance.now(); const rs=qs.map((qq,j)=>tf.matMul(qq,ks[j])); await rs[1023].data(); const ms=performance.now()-s; console.log('per-chunk mm', ms, (2*1024*64*64*128/ms/1e6).toFixed(2),'GF'); rs.forEach(r=>r.dispose());}
