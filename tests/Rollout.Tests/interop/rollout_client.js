'use strict';
// Calls k2rl.v1.Rollout (protos/k2rl/v1/rollout.proto) with @grpc/grpc-js, an independent gRPC implementation.
// Usage: NODE_PATH=tests/interop/node_modules node rollout_client.js PROTO_PATH HOST:PORT SCENARIO...
// Runs the scenarios one after another and prints one JSON object: { "scenario": { "code": status, ... }, ... }.
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const [protoPath, address, ...names] = process.argv.slice(2);
const definition = protoLoader.loadSync(protoPath, { longs: Number, defaults: true, oneofs: true });
const proto = grpc.loadPackageDefinition(definition).k2rl.v1;
const client = new proto.Rollout(address, grpc.credentials.createInsecure());
const deadline = (ms) => ({ deadline: new Date(Date.now() + ms) });
const failure = (err, extra = {}) => ({ ...extra, code: err.code, details: err.details });

function generate(request, options, onData) {
  return new Promise((resolve) => {
    const tokens = [];
    let finished = null;
    const call = client.Generate(request, options);
    call.on('data', (m) => {
      if (m.token) tokens.push({ id: m.token.tokenId, logprob: m.token.logprob, version: m.token.weightVersion });
      if (m.finished) finished = { reason: m.finished.finishReason, truncated: m.finished.truncated, numTokens: m.finished.numTokens };
      if (onData) onData(call, tokens);
    });
    call.on('error', (err) => resolve(failure(err, { tokens })));
    call.on('status', (s) => s.code === grpc.status.OK && resolve({ code: 0, tokens, finished }));
  });
}

const unary = (method, request) => new Promise((resolve) =>
  client[method](request, deadline(30000), (err, reply) => resolve(err ? failure(err) : { code: 0, reply })));

const sampling = (extra = {}) => ({ temperature: 0.9, maxTokens: 12, seed: 5, stopOnRepetition: false, ...extra });

const scenarios = {
  generate: () => generate({ requestId: 'js-1', promptTokenIds: [1, 2, 3], sampling: sampling() }, deadline(30000)),
  invalidTopP: () => generate({ requestId: 'js-2', promptTokenIds: [1], sampling: sampling({ topP: 0 }) }, deadline(30000)),
  outOfVocab: () => generate({ requestId: 'js-3', promptTokenIds: [1, 100000], sampling: sampling() }, deadline(30000)),
  health: () => unary('Health', {}),
  // Held by the test after the first token: the deadline passes mid-generation. The channel is connected first
  // (a Health call) and the deadline is generous, so that on a loaded machine it cannot pass before the server
  // has started the call; the test checks that the first token arrived.
  deadline: async () => {
    await unary('Health', {});
    return generate({ requestId: 'js-deadline', promptTokenIds: [4, 5], sampling: sampling({ maxTokens: 200 }) }, deadline(4000));
  },
  // Cancels once the first token has arrived.
  cancel: () => generate({ requestId: 'js-cancel', promptTokenIds: [6, 7], sampling: sampling({ maxTokens: 200 }) }, deadline(30000),
    (call, tokens) => tokens.length === 1 && call.cancel()),
};

(async () => {
  const report = {};
  for (const name of names) report[name] = await scenarios[name]();
  process.stdout.write(JSON.stringify(report));
  client.close();
})();
