"""Message framing over a byte stream, as the seeds discuss it: TCP delivers one stream of
bytes, not messages, so a protocol needs delimiters. The Rust SDK's ``framing`` module.

Pure Python (no WIT imports), so it is unit-tested natively: ``plugins/python/tests``.
"""


class LineSplitter:
    """Splits bytes that arrive in arbitrary pieces into whole lines, without blocking and
    within a fixed memory bound: for event loops that cannot sit in ``readline`` (a chat
    waiting on its socket and a hub room at once). The Rust SDK's ``LineSplitter``.

    Lines end with ``\\n`` or ``\\r\\n`` (not included). A line longer than ``max`` bytes is
    cut: its first ``max`` bytes are delivered flagged as cut as soon as they are known,
    and the rest of it, up to its end, is dropped.
    """

    def __init__(self, max):
        self.max = max
        self._buf = bytearray()
        self._discarding = False

    def feed(self, data):
        """Feeds the next piece of the stream; returns ``[(line, cut), ...]`` for every line
        it completes (or cuts)."""
        lines = []
        i = 0
        while i < len(data):
            newline = data.find(b"\n", i)
            if self._discarding:
                if newline < 0:
                    break
                i = newline + 1
                self._discarding = False
                continue
            # Up to `max + 1` bytes may be held: the extra one can be the `\r` of a `\r\n`.
            room = self.max + 1 - len(self._buf)
            if 0 <= newline - i <= room:
                self._buf += data[i:newline]
                i = newline + 1
                if self._buf.endswith(b"\r"):
                    del self._buf[-1]
                lines.append((bytes(self._buf[: self.max]), len(self._buf) > self.max))
                self._buf.clear()
            else:
                take = min(len(data) - i, room)
                self._buf += data[i : i + take]
                i += take
                # Full, and the next byte (if known) is not the `\n` of a `\r\n`.
                if len(self._buf) > self.max and (not self._buf.endswith(b"\r") or i < len(data)):
                    lines.append((bytes(self._buf[: self.max]), True))
                    self._buf.clear()
                    self._discarding = True
        return lines

    def pending(self):
        """Bytes of an unfinished line held so far."""
        return bytes(self._buf)
