"""The seed echo server in Python: every chunk read comes back as ``Echo=>`` + chunk.

Setting ``PREFIX`` replaces ``Echo=>``; an empty ``PREFIX`` gives plain RFC 862 echo. The
same component answers UDP datagrams with the same rule. Behaves exactly like the Rust
echo (``plugins/echo``); only its name differs.
"""

from switchboard_sdk import plugin_info, serve, setting

VERSION = "0.1.0"


def prefix():
    return setting("PREFIX", "Echo=>").encode()


def echo(conn):
    """The seed's loop: ``data = recv(); sendall(prefix + data)`` until the client closes."""
    reply_prefix = prefix()
    while data := conn.recv():
        conn.sendall(reply_prefix + data)


class Meta:
    def describe(self):
        return plugin_info("echo-py", VERSION, "replies Echo=> + each chunk read (PREFIX)", ["tcp:50007"])


class Handler:
    def handle_connection(self, info, input, output):
        serve(echo, info, input, output)


class DatagramHandler:
    def handle_datagram(self, peer, payload):
        return [prefix() + payload]
