// What a JavaScript plugin may learn about its TLS session, for plugins of the
// `tls-stream-plugin` and `tls-full-plugin` worlds (plugins/js/wit/worlds.wit): the other
// worlds do not import `switchboard:plugin/tls`, so this lives apart from switchboard.js.
//
//   import { tlsSession } from './sdk/tls.js';
//   const session = tlsSession();  // undefined over plain TCP
//   if (session) conn.write(utf8(`hello ${session.serverName ?? 'stranger'}\r\n`));

import { session } from 'switchboard:plugin/tls@0.1.2';

/**
 * The TLS session the connection arrived over (a `tls:` listener), or `undefined` over
 * plain TCP, serial and dialed connections: `{ serverName, alpn, version, cipherSuite,
 * clientCertificate }`, where `serverName` (SNI), `alpn` and `clientCertificate` (the
 * verified client certificate: `{ subject, sans, sha256 }`) may be `undefined`.
 */
export function tlsSession() {
  return session();
}
