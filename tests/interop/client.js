'use strict';
// Calls the test service with @grpc/grpc-js and prints one JSON line with what happened.
// Usage: node client.js PROTO_PATH HOST:PORT SCENARIO
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const [protoPath, address, scenario] = process.argv.slice(2);
const definition = protoLoader.loadSync(protoPath, { longs: Number, defaults: true });
const proto = grpc.loadPackageDefinition(definition).k2rl.test.v1;
const client = new proto.TestService(address, grpc.credentials.createInsecure());
const deadline = (ms) => ({ deadline: new Date(Date.now() + ms) });

function done(result) {
  process.stdout.write(JSON.stringify(result) + '\n');
  client.close();
}
const failure = (err, extra = {}) => done({ ...extra, code: err.code, details: err.details });

// Collects a response stream; reports the items and the final status.
function collect(call, map) {
  const items = [];
  call.on('data', (m) => items.push(map(m)));
  call.on('error', (err) => failure(err, { items }));
  call.on('status', (s) => {
    if (s.code === grpc.status.OK) {
      done({ code: 0, items });
    }
  });
}

const scenarios = {
  unary() {
    client.Echo({ text: 'from js ✓', replySize: 10 }, deadline(10000), (err, r) =>
      err ? failure(err) : done({ code: 0, text: r.text, payloadLength: r.payload.length }));
  },
  serverStream() {
    collect(client.Count({ n: 5 }, deadline(10000)), (m) => m.i);
  },
  streamError() {
    collect(client.Count({ n: 2, failCode: grpc.status.ABORTED }, deadline(10000)), (m) => m.i);
  },
  clientStream() {
    const call = client.Sum(deadline(10000), (err, r) => (err ? failure(err) : done({ code: 0, total: r.total, count: r.count })));
    [1, 2, 3, 4].forEach((value) => call.write({ value }));
    call.end();
  },
  bidi() {
    const call = client.Chat(deadline(10000));
    const texts = ['a', 'b', 'c'];
    let next = 0;
    const items = [];
    call.on('data', (m) => {
      items.push(m.text);
      if (++next < texts.length) {
        call.write({ text: texts[next] });
      } else {
        call.end();
      }
    });
    call.on('error', (err) => failure(err, { items }));
    call.on('status', (s) => s.code === grpc.status.OK && done({ code: 0, items }));
    call.write({ text: texts[0] });
  },
  deadline() {
    client.Echo({ text: 'js-deadline', delayMs: 60000 }, deadline(300), (err) =>
      (err ? failure(err) : done({ code: 0 })));
  },
  error() {
    client.Echo({ failCode: grpc.status.FAILED_PRECONDITION, failMessage: 'nope: 100% ✓' }, deadline(10000), (err) =>
      (err ? failure(err) : done({ code: 0 })));
  },
  oversize() {
    client.Echo({ text: 'big', payload: Buffer.alloc(100 * 1024) }, deadline(10000), (err) =>
      (err ? failure(err) : done({ code: 0 })));
  },
  cancel() {
    const call = client.Count({ n: -1, delayMs: 5, tag: 'js-cancel' });
    let received = 0;
    call.on('data', () => {
      if (++received === 3) {
        call.cancel();
      }
    });
    call.on('error', (err) => failure(err, { received }));
  },
};

if (!scenarios[scenario]) {
  process.stderr.write(`unknown scenario ${scenario}; one of ${Object.keys(scenarios).join(', ')}\n`);
  process.exit(2);
}
scenarios[scenario]();
