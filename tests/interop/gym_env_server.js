'use strict';
// An environment written in JavaScript, served with @grpc/grpc-js over K2RL's remote-environment protocol
// (protos/k2rl/v1/gym.proto), for K2RL's RemoteEnvironment client to drive.
// Usage: node gym_env_server.js PROTO_PATH   (PROTO_PATH = protos/k2rl/v1/gym.proto)
// Prints "listening PORT" once bound to a free loopback port. Exits when stdin closes.
//
// Environment "js_sum": "What is A + B?" with A, B drawn from the seed. Actions:
//   "hint"        -> a user message with a hint, reward 0, episode goes on (multi-turn)
//   "Answer: N"   -> reward 1 if N == A + B else 0, terminated
//   "HANG"        -> never answers (for client timeouts)
//   anything else -> an observation saying it was not understood, reward -0.1
// Snapshot/Restore carry the episode as JSON bytes with a magic prefix.
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const [protoPath] = process.argv.slice(2);
const definition = protoLoader.loadSync(protoPath, { longs: Number, enums: String, defaults: true });
const proto = grpc.loadPackageDefinition(definition).k2rl.v1;
const MAGIC = 'JSGYM1:';
const sessions = new Map();

// A small deterministic generator (mulberry32) so the same seed gives the same task.
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const msg = (role, content) => ({ role, content, toolCallId: '' });
const fail = (callback, code, details) => callback({ code, details });

function observation(messages, tools) {
  return { messages, tools: tools || [] };
}

function reply(obs, reward, terminated, truncated, verdict, error) {
  return { observation: obs, reward, terminated, truncated, info: { verdict, error: error || '', data: {} } };
}

const service = {
  Reset(call, callback) {
    const r = call.request;
    if (r.env !== 'js_sum') {
      return fail(callback, grpc.status.INVALID_ARGUMENT, `unknown environment '${r.env}' (this server has js_sum)`);
    }
    const next = rng(Number(r.seed) + (r.split === 'SPLIT_HELD_OUT' ? 1000003 : 0));
    const digits = Math.max(1, r.difficulty || 1);
    const a = Math.floor(next() * 10 ** (digits + 1));
    const b = Math.floor(next() * 10 ** (digits + 1));
    sessions.set(r.session, { a, b, turns: 0, done: false });
    const tools = [{ name: 'none', description: 'no tools here', parametersSchemaJson: '{"type":"object"}' }];
    callback(null, { observation: observation([msg('ROLE_SYSTEM', 'End with Answer: N.'), msg('ROLE_USER', `What is ${a} + ${b}?`)], tools) });
  },

  Step(call, callback) {
    const r = call.request;
    const s = sessions.get(r.session);
    if (!s) {
      return fail(callback, grpc.status.NOT_FOUND, `no session '${r.session}'`);
    }
    const action = Buffer.from(r.action).toString('utf8');
    if (action === 'HANG') {
      return; // never answers
    }
    if (s.done) {
      return callback(null, reply(observation([msg('ROLE_USER', 'episode is over')]), -0.1, true, false, 'VERDICT_NONE', 'episode is over'));
    }
    s.turns++;
    if (action === 'hint') {
      return callback(null, reply(observation([msg('ROLE_USER', `The sum ends in ${(s.a + s.b) % 10}.`)]), 0, false, false, 'VERDICT_NONE'));
    }
    const m = /Answer:\s*(-?\d+)/.exec(action);
    if (!m) {
      return callback(null, reply(observation([msg('ROLE_USER', 'not understood')]), -0.1, false, s.turns >= 5, 'VERDICT_NONE', 'no answer'));
    }
    s.done = true;
    const ok = Number(m[1]) === s.a + s.b;
    callback(null, reply(observation([msg('ROLE_USER', ok ? 'Correct.' : 'Incorrect.')]), ok ? 1 : 0, true, false, ok ? 'VERDICT_CORRECT' : 'VERDICT_WRONG'));
  },

  Close(call, callback) {
    sessions.delete(call.request.session);
    callback(null, {});
  },

  Snapshot(call, callback) {
    const s = sessions.get(call.request.session);
    if (!s) {
      return fail(callback, grpc.status.NOT_FOUND, `no session '${call.request.session}'`);
    }
    callback(null, { state: Buffer.from(MAGIC + JSON.stringify(s), 'utf8') });
  },

  Restore(call, callback) {
    const text = Buffer.from(call.request.state).toString('utf8');
    if (call.request.env !== 'js_sum' || !text.startsWith(MAGIC)) {
      return fail(callback, grpc.status.INVALID_ARGUMENT, 'not a js_sum snapshot');
    }
    sessions.set(call.request.session, JSON.parse(text.slice(MAGIC.length)));
    callback(null, {});
  },
};

const server = new grpc.Server();
server.addService(proto.Gym.service, service);
server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => {
  if (err) {
    process.stderr.write(String(err) + '\n');
    process.exit(1);
  }
  process.stdout.write(`listening ${port}\n`);
});
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
