// An ES-module app: tfjs and every subpath of the library by `import`.
import * as tf from '@tensorflow/tfjs';
import * as core from 'tfjs-lsh-attention';
import * as backend from 'tfjs-lsh-attention/backend';
import * as layers from 'tfjs-lsh-attention/layers';
import * as lsh from 'tfjs-lsh-attention/lsh';
import * as node from 'tfjs-lsh-attention/node';
import * as testing from 'tfjs-lsh-attention/testing';
import consumer from './run.cjs';

const report = await consumer.run(tf, { '.': core, './layers': layers, './backend': backend, './node': node, './lsh': lsh, './testing': testing });
console.log(JSON.stringify({ format: 'esm', ...report }));
