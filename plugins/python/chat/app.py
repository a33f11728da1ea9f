"""The developerWorks chatServer (port 2626) in Python: each connection is its own
instance, and the relay goes through a hub room. Behaves exactly like the Rust chat
(``plugins/chat``); only its name differs.

Wire format, as in the seed, every line ending in ``\\r\\n``: a welcome line to the new
client; ``Client joined HOST:PORT`` to the others; each line a client sends goes to every
*other* client as ``[HOST:PORT] line``; ``Client left HOST:PORT`` when it goes.

Beyond the seed: ``/nick NAME`` (later lines show ``[NAME]``; join/leave notices keep the
address), ``/who`` (the members, to the asker only), ``/quit``. Empty lines are not
relayed. A line longer than ``MAX_LINE`` bytes is relayed cut, ending in `` [cut]``.

A line the hub refuses (the sender is over its publish budget) is not relayed; the sender
is told ``* not relayed: over-budget``.

Settings: ``GREETING``, ``ROOM`` (hub room; default ``chat``), ``MAX_LINE`` (default 4096,
at most 65,000 so that a relayed line always fits in one 64 KiB hub message).
"""

import re

from switchboard_sdk import INPUT, HubError, LineSplitter, Room, plugin_info, serve, setting

VERSION = "0.1.0"
DEFAULT_GREETING = "You're connected to the switchboard chat server"
MAX_NICK = 32
#: The longest ``MAX_LINE``: tag, line, `` [cut]`` and ``\r\n`` stay within the hub's 64 KiB.
MAX_LINE_LIMIT = 65_000

# Rust's `char::is_whitespace` (Unicode White_Space) and `str::trim`; Python's `isspace`
# and `strip()` also take U+001C..U+001F.
WHITESPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
# What Rust's `str::parse::<usize>` accepts on wasm32 (a `u32`); anything else means 4096.
USIZE = re.compile(r"\+?[0-9]+")
USIZE_MAX = 2**32 - 1


def max_line():
    """``MAX_LINE``, read as the Rust chat reads it: 4096 unless a valid size, from 1 to
    65,000."""
    text = setting("MAX_LINE", "4096")
    value = int(text) if USIZE.fullmatch(text) else 4096
    return min(max(value if value <= USIZE_MAX else 4096, 1), MAX_LINE_LIMIT)


def notify(room, msg):
    """Publishes a notice, best effort: a sender over its budget is not told twice."""
    try:
        room.publish(msg)
    except HubError:
        pass


def tag(nick):
    """The sender's tag before a relayed line: ``[HOST:PORT] `` or ``[NAME] ``; an IPv6
    peer's address is already bracketed (``[::1]:40150``) and stands as it is."""
    return f"{nick} " if nick.startswith("[") else f"[{nick}] "


def bad_nick(name):
    """Whether ``name`` is empty, over ``MAX_NICK`` bytes, or holds a space, a control
    character or a bracket."""
    return (
        not name
        or len(name.encode()) > MAX_NICK
        or any(c in WHITESPACE or c <= "\x1f" or "\x7f" <= c <= "\x9f" or c in "[]" for c in name)
    )


class Client:
    """One client's side of the room."""

    def __init__(self, conn, room, addr):
        self.conn = conn
        self.room = room
        self.addr = addr
        self.nick = addr
        self.quit = False

    def line(self, line, cut):
        """Handles one complete line from the client."""
        if not line and not cut:
            return
        if not cut and line.startswith(b"/"):
            self.command(line.decode("utf-8", "replace"))
            return
        try:
            self.room.publish(tag(self.nick).encode() + line + (b" [cut]" if cut else b"") + b"\r\n")
        except HubError as e:
            self.conn.write(f"* not relayed: {e.reason}\r\n".encode())

    def command(self, line):
        cmd, _, arg = line.partition(" ")
        arg = arg.strip(WHITESPACE)
        if cmd == "/nick":
            if bad_nick(arg):
                self.conn.write(f"* /nick NAME: 1-{MAX_NICK} characters, no spaces or brackets\r\n".encode())
                return
            notify(self.room, f"* {self.nick} is now known as {arg}\r\n".encode())
            self.nick = arg
            self.room.set_name(arg)
            self.conn.write(f"* you are now known as {arg}\r\n".encode())
        elif cmd == "/who":
            names = self.room.names()
            self.conn.write(f"* {len(names)} here: {', '.join(names)}\r\n".encode())
        elif cmd == "/quit":
            self.quit = True
            self.conn.write(b"* bye\r\n")
        else:
            self.conn.write(f"* unknown command {cmd}; try /nick NAME, /who, /quit\r\n".encode())

    def converse(self, max_line):
        """The conversation, until the client closes, quits, or the connection fails."""
        lines = LineSplitter(max_line)
        while not self.quit:
            event = self.conn.wait(self.room)
            # Relay what the room has first, so a chatty client still hears the others.
            while (msg := self.room.try_recv()) is not None:
                self.conn.write(msg)
            if event == INPUT:
                chunk = self.conn.recv()
                if not chunk:
                    break
                for line, cut in lines.feed(chunk):
                    self.line(line, cut)
                    if self.quit:
                        break
            self.conn.flush()


def chat(conn):
    limit = max_line()
    with Room(setting("ROOM", "chat")) as room:
        addr = conn.peer
        # Announce first: once a client sees its welcome, everyone already in the room has
        # been told, and nobody who joins later hears an old join.
        notify(room, f"Client joined {addr}\r\n".encode())
        conn.sendall(f"{setting('GREETING', DEFAULT_GREETING)}\r\n".encode())

        client = Client(conn, room, addr)
        try:
            client.converse(limit)
        finally:
            # However it ended (close, reset, /quit, host-side close), the others hear of it;
            # a client that went away ends quietly (serve sees to it).
            notify(room, f"Client left {client.addr}\r\n".encode())


class Meta:
    def describe(self):
        return plugin_info("chat-py", VERSION, "the developerWorks chat server over a hub room", ["tcp:2626"])


class Handler:
    def handle_connection(self, info, input, output):
        serve(chat, info, input, output)
