// The developerWorks chatServer (port 2626) in JavaScript: each connection is its own
// instance, and the relay goes through a hub room. Behaves exactly like the Rust chat
// (plugins/chat) and chat-py; only its name differs.
//
// Wire format, as in the seed, every line ending in `\r\n`: a welcome line to the new
// client; `Client joined HOST:PORT` to the others; each line a client sends goes to every
// *other* client as `[HOST:PORT] line`; `Client left HOST:PORT` when it goes.
//
// Beyond the seed: `/nick NAME` (later lines show `[NAME]`; join/leave notices keep the
// address), `/who` (the members, to the asker only), `/quit`. Empty lines are not
// relayed. A line longer than MAX_LINE bytes is relayed cut, ending in ` [cut]`. A line
// the hub refuses (the sender is over its publish budget) is not relayed; the sender is
// told `* not relayed: over-budget`.
//
// Settings: GREETING, ROOM (hub room; default `chat`), MAX_LINE (default 4096, at most
// 65,000 so that a relayed line always fits in one 64 KiB hub message).

import { LineSplitter } from '../sdk/framing.js';
import { HubError, INPUT, Room, wait } from '../sdk/hub.js';
import { concat, serve, setting, utf8 } from '../sdk/switchboard.js';

const VERSION = '0.1.0';
const DEFAULT_GREETING = "You're connected to the switchboard chat server";
const MAX_NICK = 32;
/** The longest MAX_LINE: tag, line, ` [cut]` and `\r\n` stay within the hub's 64 KiB. */
const MAX_LINE_LIMIT = 65000;
/** Rust's `char::is_whitespace` (Unicode White_Space), which `str::trim` strips. */
const WHITESPACE = new Set(
  '\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000',
);

/** MAX_LINE as the Rust chat reads it: 4096 unless a valid size (a u32), from 1 to 65,000. */
function maxLine() {
  const text = setting('MAX_LINE', '4096');
  let value = /^\+?[0-9]+$/.test(text) ? Number(text.replace(/^\+/, '')) : 4096;
  if (value > 2 ** 32 - 1) value = 4096;
  return Math.min(Math.max(value, 1), MAX_LINE_LIMIT);
}

/** `text` without leading and trailing Unicode whitespace (Rust's `str::trim`). */
function trim(text) {
  const chars = Array.from(text);
  let start = 0;
  let end = chars.length;
  while (start < end && WHITESPACE.has(chars[start])) start += 1;
  while (end > start && WHITESPACE.has(chars[end - 1])) end -= 1;
  return chars.slice(start, end).join('');
}

/** Publishes a notice, best effort: a sender over its budget is not told twice. */
function notify(room, text) {
  try {
    room.publish(utf8(text));
  } catch (e) {
    if (!(e instanceof HubError)) throw e;
  }
}

/** The sender's tag: `[HOST:PORT] ` or `[NAME] `; an IPv6 peer's address is already bracketed. */
function tag(nick) {
  return nick.startsWith('[') ? `${nick} ` : `[${nick}] `;
}

/** Whether `name` is empty, over MAX_NICK bytes, or holds a space, a control character or a bracket. */
function badNick(name) {
  if (!name || utf8(name).length > MAX_NICK) return true;
  return Array.from(name).some((c) => WHITESPACE.has(c) || c <= '\x1f' || ('\x7f' <= c && c <= '\x9f') || c === '[' || c === ']');
}

/** One client's side of the room. */
class Client {
  constructor(conn, room, addr) {
    this.conn = conn;
    this.room = room;
    this.addr = addr;
    this.nick = addr;
    this.quit = false;
  }

  /** Handles one complete line from the client. */
  line(line, cut) {
    if (line.length === 0 && !cut) return;
    if (!cut && line[0] === 0x2f) {
      this.command(new TextDecoder().decode(line));
      return;
    }
    try {
      this.room.publish(concat(concat(utf8(tag(this.nick)), line), utf8(cut ? ' [cut]\r\n' : '\r\n')));
    } catch (e) {
      if (!(e instanceof HubError)) throw e;
      this.conn.write(utf8(`* not relayed: ${e.reason}\r\n`));
    }
  }

  command(line) {
    const space = line.indexOf(' ');
    const cmd = space < 0 ? line : line.slice(0, space);
    const arg = space < 0 ? '' : trim(line.slice(space + 1));
    if (cmd === '/nick') {
      if (badNick(arg)) {
        this.conn.write(utf8(`* /nick NAME: 1-${MAX_NICK} characters, no spaces or brackets\r\n`));
        return;
      }
      notify(this.room, `* ${this.nick} is now known as ${arg}\r\n`);
      this.nick = arg;
      this.room.setName(arg);
      this.conn.write(utf8(`* you are now known as ${arg}\r\n`));
    } else if (cmd === '/who') {
      const names = this.room.names();
      this.conn.write(utf8(`* ${names.length} here: ${names.join(', ')}\r\n`));
    } else if (cmd === '/quit') {
      this.quit = true;
      this.conn.write(utf8('* bye\r\n'));
    } else {
      this.conn.write(utf8(`* unknown command ${cmd}; try /nick NAME, /who, /quit\r\n`));
    }
  }

  /** The conversation, until the client closes, quits, or the connection fails. */
  converse(limit) {
    const lines = new LineSplitter(limit);
    while (!this.quit) {
      const event = wait(this.conn, this.room);
      // Relay what the room has first, so a chatty client still hears the others.
      for (let msg = this.room.tryRecv(); msg !== undefined; msg = this.room.tryRecv()) this.conn.write(msg);
      if (event === INPUT) {
        const chunk = this.conn.recv();
        if (chunk.length === 0) break;
        for (const [line, cut] of lines.feed(chunk)) {
          this.line(line, cut);
          if (this.quit) break;
        }
      }
      this.conn.flush();
    }
  }
}

function chat(conn) {
  const limit = maxLine();
  const room = new Room(setting('ROOM', 'chat'));
  const addr = conn.peer;
  const client = new Client(conn, room, addr);
  try {
    // Announce first: once a client sees its welcome, everyone already in the room has
    // been told, and nobody who joins later hears an old join.
    notify(room, `Client joined ${addr}\r\n`);
    conn.sendall(utf8(`${setting('GREETING', DEFAULT_GREETING)}\r\n`));
    client.converse(limit);
  } finally {
    // However it ended (close, reset, /quit, host-side close), the others hear of it; a
    // client that went away ends quietly (serve sees to it).
    notify(room, `Client left ${client.addr}\r\n`);
    room.close();
  }
}

export const meta = {
  describe() {
    return { name: 'chat-js', version: VERSION, summary: 'the developerWorks chat server over a hub room', listen: ['tcp:2626'] };
  },
};

export const handler = {
  handleConnection(info, input, output) {
    serve(chat, info, input, output);
  },
};
