// Message framing over a byte stream, as the seeds discuss it: TCP delivers one stream of
// bytes, not messages, so a protocol needs delimiters. The Rust SDK's `framing` module and
// the Python SDK's `LineSplitter`. Pure JavaScript (no WIT imports): any world may use it.

/**
 * Splits bytes that arrive in arbitrary pieces into whole lines, without blocking and
 * within a fixed memory bound: for event loops that cannot sit in `readline` (a chat
 * waiting on its socket and a hub room at once).
 *
 * Lines end with `\n` or `\r\n` (not included). A line longer than `max` bytes is cut: its
 * first `max` bytes are delivered flagged as cut as soon as they are known, and the rest
 * of it, up to its end, is dropped.
 */
export class LineSplitter {
  constructor(max) {
    this.max = max;
    // Up to `max + 1` bytes are held: the extra one can be the `\r` of a `\r\n`.
    this.buf = new Uint8Array(max + 1);
    this.len = 0;
    this.discarding = false;
  }

  /** Feeds the next piece of the stream; returns `[[line, cut], ...]` for every line it completes (or cuts). */
  feed(data) {
    const lines = [];
    let i = 0;
    while (i < data.length) {
      const newline = data.indexOf(0x0a, i);
      if (this.discarding) {
        if (newline < 0) break;
        i = newline + 1;
        this.discarding = false;
        continue;
      }
      const room = this.max + 1 - this.len;
      if (newline >= 0 && newline - i <= room) {
        this.buf.set(data.subarray(i, newline), this.len);
        this.len += newline - i;
        i = newline + 1;
        if (this.len > 0 && this.buf[this.len - 1] === 0x0d) this.len -= 1;
        lines.push([this.buf.slice(0, Math.min(this.len, this.max)), this.len > this.max]);
        this.len = 0;
      } else {
        const take = Math.min(data.length - i, room);
        this.buf.set(data.subarray(i, i + take), this.len);
        this.len += take;
        i += take;
        // Full, and the next byte (if known) is not the `\n` of a `\r\n`.
        if (this.len > this.max && (this.buf[this.len - 1] !== 0x0d || i < data.length)) {
          lines.push([this.buf.slice(0, this.max), true]);
          this.len = 0;
          this.discarding = true;
        }
      }
    }
    return lines;
  }

  /** Bytes of an unfinished line held so far. */
  pending() {
    return this.buf.slice(0, this.len);
  }
}
