// The guest helpers for switchboard plugins written in JavaScript (componentize-js): the
// JavaScript counterpart of plugins/sdk (Rust) and plugins/python/switchboard_sdk.
//
// A plugin module exports `meta`, `handler` (and `datagramHandler` in the full-plugin
// world); `serve(handle, info, input, output)` runs `handle(conn)` on a `Connection`:
//
//   export const handler = {
//     handleConnection(info, input, output) { serve(hello, info, input, output); },
//   };
//
// Pollables are children of their streams: `Connection.close` disposes them first.
//
// Beside this module: `framing.js` (LineSplitter, pure) and, for the stream and full
// worlds, `hub.js` (Room, HubError, wait(conn, room)).

import { getEnvironment } from 'wasi:cli/environment@0.2.3';

/** Bytes asked for per read from the host; large reads keep bulk transfers cheap. */
const READ_CHUNK = 65536n;

/** A setting (an environment variable the operator set), or `fallback` if unset. */
export function setting(key, fallback) {
  const found = getEnvironment().find(([k]) => k === key);
  return found ? found[1] : fallback;
}

/** The bytes of a string, UTF-8. */
export function utf8(text) {
  return new TextEncoder().encode(text);
}

/** `a` followed by `b`, as one Uint8Array. */
export function concat(a, b) {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** A stream error as an Error: `closed` (the peer is gone) or a failure with its text. */
function streamError(e) {
  if (e?.payload?.tag === 'closed') return Object.assign(new Error('the connection is closed'), { closed: true });
  if (e?.payload?.tag === 'last-operation-failed') return new Error(e.payload.val.toDebugString());
  return e;
}

/**
 * One conversation: the peer's bytes in, ours out; a socket-like object. `recv()` returns
 * an empty array at the end of the peer's stream; `sendall` writes and flushes, using
 * check-write / write / flush (blocking-write-and-flush traps above 4096 bytes).
 */
export class Connection {
  constructor(info, input, output) {
    /** The host's connection-info (`id`, `transport`, `role`, `peer`, `local`). */
    this.info = info;
    this.input = input;
    this.output = output;
    /** Ready when input (or its end) can be read; `wait` in hub.js polls it. */
    this.inputReady = input.subscribe();
    this.outputReady = output.subscribe();
    /** Bytes read from the host and not yet handed out (by `readline`). */
    this.buffered = new Uint8Array(0);
    /** The peer's stream has ended. */
    this.eof = false;
    /**
     * The peer reset the connection or stopped taking our output; `serve` then ends the
     * conversation quietly, whatever `handle` threw, because the peer leaving is no fault
     * of the plugin's.
     */
    this.peerGone = false;
  }

  /** The error for a failed write; the peer is gone either way. */
  writeError(e) {
    this.peerGone = true;
    return streamError(e);
  }

  /** The peer's address (`HOST:PORT`), or the device path of a serial line. */
  get peer() {
    return this.info.peer;
  }

  /** The next bytes the peer sent (blocking); empty at the end of the stream. */
  recv() {
    if (this.buffered.length > 0) {
      const out = this.buffered;
      this.buffered = new Uint8Array(0);
      return out;
    }
    if (this.eof) return new Uint8Array(0);
    try {
      return this.input.blockingRead(READ_CHUNK);
    } catch (e) {
      const err = streamError(e);
      if (err.closed) {
        this.eof = true;
        return new Uint8Array(0);
      }
      // A failed read is a reset: the peer is gone.
      this.peerGone = true;
      throw err;
    }
  }

  /**
   * The next line, up to and including its `\n` (blocking), like a file's readline: at
   * most `limit` bytes (then the line's start; the rest follows in the next call), and
   * whatever is left, without `\n`, at the end of the stream; empty after the end.
   */
  readline(limit = Infinity) {
    const parts = [];
    let size = 0;
    while (size < limit) {
      const chunk = this.recv();
      if (chunk.length === 0) break;
      const newline = chunk.indexOf(0x0a);
      const end = Math.min(newline >= 0 ? newline + 1 : chunk.length, limit - size);
      parts.push(chunk.subarray(0, end));
      size += end;
      if (end < chunk.length) this.buffered = chunk.slice(end);
      if (newline >= 0 && newline < end) break;
    }
    const out = new Uint8Array(size);
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }

  /** Writes all of `data` (without flushing), waiting while the host is full. */
  write(data) {
    while (data.length > 0) {
      const permit = this.checkWrite();
      if (permit === 0) {
        this.outputReady.block();
        continue;
      }
      const n = Math.min(data.length, permit);
      try {
        this.output.write(data.subarray(0, n));
      } catch (e) {
        throw this.writeError(e);
      }
      data = data.subarray(n);
    }
  }

  /** Waits until everything written has been handed to the host. */
  flush() {
    try {
      this.output.flush();
    } catch (e) {
      throw this.writeError(e);
    }
    // check-write reports 0 until the flush has completed.
    while (this.checkWrite() === 0) this.outputReady.block();
  }

  /** Writes all of `data` and flushes it, like a socket's sendall. */
  sendall(data) {
    this.write(data);
    this.flush();
  }

  checkWrite() {
    try {
      return Number(this.output.checkWrite());
    } catch (e) {
      throw this.writeError(e);
    }
  }

  /** Disposes the pollable, then the streams (the host then closes the connection). */
  close() {
    for (const key of ['inputReady', 'outputReady', 'input', 'output']) {
      this[key]?.[Symbol.dispose]?.();
      this[key] = undefined;
    }
  }
}

/**
 * Runs `handle(conn)` on the streams handle-connection was given, as the Rust SDK's export
 * macros do: what was written is delivered whether `handle` returns or throws; a peer that
 * reset or went away while we wrote ends the conversation quietly (it is not the plugin's
 * error), and any other thrown error becomes the `err` the host logs.
 */
export function serve(handle, info, input, output) {
  const conn = new Connection(info, input, output);
  let failure;
  try {
    handle(conn);
  } catch (e) {
    failure = e;
  }
  try {
    conn.flush();
  } catch (e) {
    if (!e.closed) failure ??= new Error(`flushing output: ${e.message}`);
  } finally {
    conn.close();
  }
  if (conn.peerGone) return;
  if (failure !== undefined) throw String(failure?.message ?? failure);
}
