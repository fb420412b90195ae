'use strict';
// The test service (tests/Common.Tests/Rpc/test_service.proto) on @grpc/grpc-js, for K2RL's client to call.
// Usage: node server.js PROTO_PATH
// Prints "listening PORT" once bound to a free loopback port, "started TAG" when a delayed handler
// begins waiting and "cancelled TAG" when it sees its call cancelled. Exits when stdin closes.
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const [protoPath] = process.argv.slice(2);
const definition = protoLoader.loadSync(protoPath, { longs: Number, defaults: true });
const proto = grpc.loadPackageDefinition(definition).k2rl.test.v1;
const say = (line) => process.stdout.write(line + '\n');
const announced = new Set();

// Resolves after ms, rejects if the call is cancelled first (client cancel or deadline).
function wait(call, ms, tag) {
  if (!ms) {
    return new Promise((resolve) => setImmediate(resolve));
  }
  if (!announced.has(tag)) {
    announced.add(tag);
    say(`started ${tag}`);
  }
  return new Promise((resolve, reject) => {
    const onCancel = () => {
      clearTimeout(timer);
      say(`cancelled ${tag}`);
      reject(new Error('cancelled'));
    };
    const timer = setTimeout(() => {
      call.off('cancelled', onCancel);
      resolve();
    }, ms);
    if (call.cancelled) {
      onCancel();
    } else {
      call.once('cancelled', onCancel);
    }
  });
}

const reply = (r) => ({ text: r.text, payload: Buffer.alloc(r.replySize) });

async function Echo(call, callback) {
  const r = call.request;
  try {
    await wait(call, r.delayMs, r.text);
  } catch {
    return;
  }
  if (r.failCode) {
    callback({ code: r.failCode, details: r.failMessage });
  } else {
    callback(null, reply(r));
  }
}

async function Count(call) {
  const r = call.request;
  for (let i = 0; r.n < 0 || i < r.n; i++) {
    if (i > 0) {
      try {
        await wait(call, r.delayMs, r.tag);
      } catch {
        return;
      }
    }
    call.write({ i });
  }
  if (r.failCode) {
    call.emit('error', { code: r.failCode, details: `failed after ${r.n}` });
  } else {
    call.end();
  }
}

function Sum(call, callback) {
  let total = 0;
  let count = 0;
  let failed = false;
  call.on('data', (r) => {
    if (failed) {
      return;
    }
    if (r.value < 0) {
      failed = true;
      callback({ code: grpc.status.INVALID_ARGUMENT, details: `negative value ${r.value}` });
      return;
    }
    total += r.value;
    count += 1;
  });
  call.on('end', () => {
    if (!failed) {
      callback(null, { total, count });
    }
  });
}

function Chat(call) {
  let chain = Promise.resolve();
  let failed = false;
  call.on('data', (r) => {
    chain = chain.then(async () => {
      if (failed) {
        return;
      }
      await wait(call, r.delayMs, r.text);
      if (r.failCode) {
        failed = true;
        call.emit('error', { code: r.failCode, details: r.failMessage });
      } else {
        call.write(reply(r));
      }
    }).catch(() => { failed = true; });
  });
  call.on('end', () => chain.then(() => { if (!failed) call.end(); }));
}

// The same receive limit as the K2RL test server (RpcServerFixture.Limit).
const server = new grpc.Server({ 'grpc.max_receive_message_length': 64 * 1024 });
server.addService(proto.TestService.service, { Echo, Count, Sum, Chat });
server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => {
  if (err) {
    process.stderr.write(`bind failed: ${err.message}\n`);
    process.exit(1);
  }
  say(`listening ${port}`);
});
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
