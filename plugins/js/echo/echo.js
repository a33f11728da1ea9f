// The seed echo server in JavaScript: every chunk read comes back as `Echo=>` + chunk.
//
// Setting PREFIX replaces `Echo=>`; an empty PREFIX gives plain RFC 862 echo. The same
// component answers UDP datagrams with the same rule. Behaves exactly like the Rust echo
// (plugins/echo); only its name differs.

import { concat, serve, setting, utf8 } from '../sdk/switchboard.js';

const prefix = () => utf8(setting('PREFIX', 'Echo=>'));

/** The seed's loop: `data = recv(); sendall(prefix + data)` until the client closes. */
function echo(conn) {
  const replyPrefix = prefix();
  for (let data = conn.recv(); data.length > 0; data = conn.recv()) {
    conn.sendall(concat(replyPrefix, data));
  }
}

export const meta = {
  describe() {
    return { name: 'echo-js', version: '0.1.0', summary: 'replies Echo=> + each chunk read (PREFIX)', listen: ['tcp:50007'] };
  },
};

export const handler = {
  handleConnection(info, input, output) {
    serve(echo, info, input, output);
  },
};

export const datagramHandler = {
  handleDatagram(peer, payload) {
    return [concat(prefix(), payload)];
  },
};
