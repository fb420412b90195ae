'use strict';
// Calls the test service (tests/Common.Tests/Rpc/test_service.proto) with @grpc/grpc-js.
// Usage: node client.js PROTO_PATH HOST:PORT [SCENARIO...]
// Runs the scenarios (all when none is named) concurrently and prints one JSON object:
// { "scenario": { "code": grpc status, ...what it saw }, ... }.
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const [protoPath, address, ...named] = process.argv.slice(2);
const definition = protoLoader.loadSync(protoPath, { longs: Number, defaults: true });
const proto = grpc.loadPackageDefinition(definition).k2rl.test.v1;
const client = new proto.TestService(address, grpc.credentials.createInsecure());
const deadline = (ms) => ({ deadline: new Date(Date.now() + ms) });
const failure = (err, extra = {}) => ({ ...extra, code: err.code, details: err.details });

// A unary or client-streaming callback as a promise of the report.
const settle = (resolve, onReply) => (err, reply) => resolve(err ? failure(err) : { code: 0, ...onReply(reply) });

// Collects a response stream: the items and the final status.
function collect(call, map) {
  return new Promise((resolve) => {
    const items = [];
    call.on('data', (m) => items.push(map(m)));
    call.on('error', (err) => resolve(failure(err, { items })));
    call.on('status', (s) => s.code === grpc.status.OK && resolve({ code: 0, items }));
  });
}

const scenarios = {
  unary: () => new Promise((resolve) =>
    client.Echo({ text: 'from js ✓', replySize: 10 }, deadline(30000),
      settle(resolve, (r) => ({ text: r.text, payloadLength: r.payload.length })))),

  serverStream: () => collect(client.Count({ n: 5 }, deadline(30000)), (m) => m.i),

  streamError: () => collect(client.Count({ n: 2, failCode: grpc.status.ABORTED }, deadline(30000)), (m) => m.i),

  clientStream: () => new Promise((resolve) => {
    const call = client.Sum(deadline(30000), settle(resolve, (r) => ({ total: r.total, count: r.count })));
    [1, 2, 3, 4].forEach((value) => call.write({ value }));
    call.end();
  }),

  // Ping-pong: each reply triggers the next request.
  bidi: () => {
    const call = client.Chat(deadline(30000));
    const texts = ['a', 'b', 'c'];
    let next = 0;
    call.on('data', () => (++next < texts.length ? call.write({ text: texts[next] }) : call.end()));
    call.write({ text: texts[0] });
    return collect(call, (m) => m.text);
  },

  deadline: () => new Promise((resolve) =>
    client.Echo({ text: 'js-deadline', delayMs: 60000 }, deadline(1000), settle(resolve, () => ({})))),

  error: () => new Promise((resolve) =>
    client.Echo({ failCode: grpc.status.FAILED_PRECONDITION, failMessage: 'nope: 100% ✓' }, deadline(30000),
      settle(resolve, () => ({})))),

  oversize: () => new Promise((resolve) =>
    client.Echo({ text: 'big', payload: Buffer.alloc(100 * 1024) }, deadline(30000), settle(resolve, () => ({})))),

  // Cancels a never-ending stream after three replies.
  cancel: () => new Promise((resolve) => {
    const call = client.Count({ n: -1, delayMs: 5, tag: 'js-cancel' });
    let received = 0;
    call.on('data', () => ++received === 3 && call.cancel());
    call.on('error', (err) => resolve(failure(err, { received })));
  }),
};

const chosen = named.length ? named : Object.keys(scenarios);
const unknown = chosen.filter((name) => !scenarios[name]);
if (unknown.length) {
  process.stderr.write(`unknown scenario ${unknown.join(', ')}; one of ${Object.keys(scenarios).join(', ')}\n`);
  process.exit(2);
}
Promise.all(chosen.map((name) => scenarios[name]())).then((results) => {
  const report = Object.fromEntries(chosen.map((name, i) => [name, results[i]]));
  process.stdout.write(JSON.stringify(report) + '\n');
  client.close();
});
