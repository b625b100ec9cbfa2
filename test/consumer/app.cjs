// A CommonJS app: tfjs and every subpath of the library by `require`.
const tf = require('@tensorflow/tfjs');
const { run } = require('./run.cjs');

const library = {
  '.': require('tfjs-lsh-attention'),
  './layers': require('tfjs-lsh-attention/layers'),
  './backend': require('tfjs-lsh-attention/backend'),
  './node': require('tfjs-lsh-attention/node'),
  './lsh': require('tfjs-lsh-attention/lsh'),
  './testing': require('tfjs-lsh-attention/testing'),
};
run(tf, library).then(
  (report) => console.log(JSON.stringify({ format: 'commonjs', ...report })),
  (error) => {
    console.error(error);
    process.exitCode = 1;
  },
);
