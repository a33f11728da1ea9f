// Hub rooms for JavaScript plugins of the stream and full worlds (the datagram world has
// no hub, so this lives apart from switchboard.js): the Rust SDK's `Room` and
// `Connection::wait`, the Python SDK's `Room` and `Connection.wait`.
//
//   const room = new Room('chat');
//   room.publish(utf8('hello\r\n'));
//   if (wait(conn, room) === ROOM) { for (let m; (m = room.tryRecv()) !== undefined; ) conn.write(m); }
//   room.close();

import { Member } from 'switchboard:plugin/hub@0.1.2';
import { poll } from 'wasi:io/poll@0.2.12';

/** `wait`'s answer: the connection has input (or its end) to read. */
export const INPUT = 'input';
/** `wait`'s answer: a message waits in the room. */
export const ROOM = 'room';

/**
 * The hub refused a call; `reason` is the WIT `hub-error` case: `name-too-long`,
 * `message-too-large`, `too-many-members` or `over-budget`.
 */
export class HubError extends Error {
  constructor(reason) {
    super(reason);
    this.reason = reason;
  }
}

/** A `result` error from the hub as a HubError (componentize-js throws its payload). */
function hubError(e) {
  return typeof e?.payload === 'string' ? new HubError(e.payload) : e;
}

/**
 * Membership of one hub room; leaving is `close()`. A message published reaches every
 * *other* member. The host keeps a bounded queue per member; a member that falls too far
 * behind is removed and its connection closed. The host's bounds (names at most 256
 * bytes, 16 rooms per connection, messages at most 64 KiB, 8 MiB and 1,000 messages per
 * second per member) throw HubError.
 */
export class Room {
  constructor(name) {
    try {
      this.member = Member.join(name);
    } catch (e) {
      throw hubError(e);
    }
    /** Ready when a message is waiting (see `wait`). */
    this.pollable = this.member.subscribe();
  }

  /** Sends `msg` (a Uint8Array, at most 64 KiB) to every other member; throws HubError when refused (not sent). */
  publish(msg) {
    try {
      this.member.tryPublish(msg);
    } catch (e) {
      throw hubError(e);
    }
  }

  /** The next waiting message, or `undefined` (never blocks). */
  tryRecv() {
    return this.member.tryRecv();
  }

  /** Blocks until a message is waiting, then returns it. */
  recv() {
    for (;;) {
      const msg = this.member.tryRecv();
      if (msg !== undefined) return msg;
      this.pollable.block();
    }
  }

  /** Number of members, this one included. */
  count() {
    return this.member.count();
  }

  /** Sets this member's display name (initially the peer's address); HubError over 256 bytes. */
  setName(name) {
    try {
      this.member.trySetName(name);
    } catch (e) {
      throw hubError(e);
    }
  }

  /** Display names of the members (at most the 1,000 oldest), oldest first. */
  names() {
    return this.member.names();
  }

  /** Leaves the room: the pollable, then the membership. */
  close() {
    for (const key of ['pollable', 'member']) {
      this[key]?.[Symbol.dispose]?.();
      this[key] = undefined;
    }
  }
}

/**
 * Blocks until `conn` has input to read (or its end) or a message waits in `room`:
 * `INPUT` or `ROOM`; input wins a tie.
 */
export function wait(conn, room) {
  if (conn.buffered.length > 0 || conn.eof) return INPUT;
  const ready = poll([conn.inputReady, room.pollable]);
  return Array.from(ready).includes(0) ? INPUT : ROOM;
}
