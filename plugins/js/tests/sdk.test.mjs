// The JavaScript SDK, natively (node --test), over stand-ins for the WIT streams:
// LineSplitter's framing, Connection.readline and recv around its buffer, settings, and
// tlsSession reaching switchboard:plugin/tls.
// `cargo xtask test` runs it: node --import ./plugins/js/tests/register.mjs --test plugins/js/tests/
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { LineSplitter } from '../sdk/framing.js';
import { Connection, setting, utf8 } from '../sdk/switchboard.js';
import { tlsSession } from '../sdk/tls.js';

const text = (bytes) => new TextDecoder().decode(bytes);

/** An input stream handing out `chunks`, then reporting itself closed as wasi does. */
function input(chunks) {
  const queue = chunks.map(utf8);
  return {
    subscribe: () => ({ block() {}, [Symbol.dispose]() {} }),
    blockingRead() {
      if (queue.length === 0) throw { payload: { tag: 'closed' } };
      return queue.shift();
    },
    [Symbol.dispose]() {},
  };
}

/** An output stream that collects what is written. */
function output(sink) {
  return {
    subscribe: () => ({ block() {}, [Symbol.dispose]() {} }),
    checkWrite: () => 4096n,
    write: (bytes) => sink.push(text(bytes)),
    flush() {},
    [Symbol.dispose]() {},
  };
}

test('LineSplitter: lines in pieces, \\r\\n and \\n, a long line cut once', () => {
  const lines = new LineSplitter(5);
  assert.deepEqual(lines.feed(utf8('he')), []);
  const got = lines.feed(utf8('llo\r\nab\ntoo long line\nok\n')).map(([l, cut]) => [text(l), cut]);
  assert.deepEqual(got, [['hello', false], ['ab', false], ['too l', true], ['ok', false]]);
  assert.deepEqual(lines.feed(utf8('12345\r')), []);
  assert.deepEqual(lines.feed(utf8('\n')).map(([l, cut]) => [text(l), cut]), [['12345', false]]);
  assert.deepEqual(lines.feed(utf8('rest')), []);
  assert.equal(text(lines.pending()), 'rest');
});

test('readline: whole lines across reads, the limit, the end of the stream', () => {
  const conn = new Connection({ peer: '127.0.0.1:1' }, input(['GET /a', 'b\r\nHost: x\nlast']), output([]));
  assert.equal(text(conn.readline()), 'GET /ab\r\n');
  assert.equal(text(conn.readline(3)), 'Hos');
  assert.equal(text(conn.readline()), 't: x\n');
  assert.equal(text(conn.recv()), 'last', 'recv hands out what readline buffered');
  assert.equal(conn.readline().length, 0);
  assert.equal(conn.recv().length, 0);
  assert.equal(conn.peer, '127.0.0.1:1');
});

test('sendall writes everything; settings come from the environment', () => {
  const sink = [];
  const conn = new Connection({}, input([]), output(sink));
  conn.sendall(utf8('Echo=>spam'));
  assert.deepEqual(sink, ['Echo=>spam']);
  assert.equal(setting('PREFIX', 'x'), 'set');
  assert.equal(setting('NOPE', 'fallback'), 'fallback');
});

test('tlsSession hands out what switchboard:plugin/tls@0.1.2 says', () => {
  const session = tlsSession();
  assert.equal(session.serverName, 'localhost');
  assert.equal(session.alpn, 'h2');
  assert.equal(session.version, 'TLSv1.3');
});
