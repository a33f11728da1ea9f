"""switchboard_sdk.Connection, natively, over stand-ins for the WIT bindings (which exist
only inside a component): readline's cost, send's count, and the error a component
built for a world without streams gets.

Run: python3 -B plugins/python/tests/test_connection.py (`cargo xtask test` does).
"""

import importlib
import pathlib
import sys
import tracemalloc
import types
import unittest

PYTHON = pathlib.Path(__file__).resolve().parent.parent


class Err(Exception):
    def __init__(self, value):
        super().__init__(value)
        self.value = value


class StreamErrorClosed:
    pass


class Pollable:
    def block(self):
        pass

    def __exit__(self, *exc):
        pass


class Input:
    """Hands out `chunks`, then reports the stream closed."""

    def __init__(self, chunks):
        self.chunks = list(chunks)

    def blocking_read(self, n):
        if not self.chunks:
            raise Err(StreamErrorClosed())
        chunk = self.chunks.pop(0)
        assert len(chunk) <= n
        return chunk

    def subscribe(self):
        return Pollable()

    def __exit__(self, *exc):
        pass


class Output:
    """Takes at most `permit` bytes between flushes."""

    def __init__(self, permit):
        self.permit = permit
        self.written = b""
        self.flushes = 0

    def check_write(self):
        return self.permit

    def write(self, data):
        assert len(data) <= self.permit
        self.written += data

    def flush(self):
        self.flushes += 1

    def subscribe(self):
        return Pollable()

    def __exit__(self, *exc):
        pass


def load_sdk(with_streams, session=None):
    """Imports switchboard_sdk afresh over stand-in bindings."""
    for name in [m for m in sys.modules if m.startswith(("switchboard_sdk", "wit_world", "componentize_py_types"))]:
        del sys.modules[name]
    modules = {
        "componentize_py_types": types.SimpleNamespace(Err=Err),
        "wit_world": types.ModuleType("wit_world"),
        "wit_world.imports.types": types.SimpleNamespace(PluginInfo=lambda **kw: kw),
    }
    imports = types.ModuleType("wit_world.imports")
    if with_streams:
        hub_error = types.SimpleNamespace(NAME_TOO_LONG=0, MESSAGE_TOO_LARGE=1, TOO_MANY_MEMBERS=2, OVER_BUDGET=3)
        imports.hub = types.SimpleNamespace(HubError=hub_error)
        modules["wit_world.imports.poll"] = types.SimpleNamespace(poll=lambda ps: [0])
        modules["wit_world.imports.streams"] = types.SimpleNamespace(StreamError_Closed=StreamErrorClosed)
    if session is not None:
        imports.tls = types.SimpleNamespace(session=lambda: session)
    modules["wit_world.imports"] = imports
    sys.modules.update(modules)
    if str(PYTHON) not in sys.path:
        sys.path.insert(0, str(PYTHON))
    return importlib.import_module("switchboard_sdk")


class ConnectionTest(unittest.TestCase):
    def setUp(self):
        self.sdk = load_sdk(with_streams=True)

    def conn(self, chunks, permit=64 * 1024):
        return self.sdk.Connection(types.SimpleNamespace(peer="127.0.0.1:1"), Input(chunks), Output(permit))

    def test_readline_splits_across_reads_and_honours_limit(self):
        conn = self.conn([b"ab\ncd", b"ef\n", b"\n", b"tail"])
        self.assertEqual(conn.readline(), b"ab\n")
        self.assertEqual(conn.readline(2), b"cd")
        self.assertEqual(conn.readline(), b"ef\n")
        self.assertEqual(conn.readline(), b"\n")
        self.assertEqual(conn.recv(2), b"ta")
        self.assertEqual(bytes(conn.fill()), b"il")
        conn.consume(1)
        self.assertEqual(conn.readline(), b"l")
        self.assertEqual(conn.readline(), b"")
        self.assertEqual(conn.recv(), b"")

    def test_a_readline_copies_its_line_not_the_rest_of_the_read(self):
        # 64 KiB of short lines in one read: before the fix, every readline copied the
        # rest of the buffer (quadratic); now it allocates about the line.
        chunk = b"x\n" * (32 * 1024)
        conn = self.conn([chunk])
        self.assertEqual(conn.readline(), b"x\n")
        tracemalloc.start()
        for _ in range(100):
            self.assertEqual(conn.readline(), b"x\n")
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        self.assertLess(peak, 8 * 1024, "readline allocated the rest of the buffer")
        lines = 101
        while conn.readline():
            lines += 1
        self.assertEqual(lines, 32 * 1024)

    def test_send_returns_what_it_wrote_like_socket_send(self):
        conn = self.conn([], permit=10)
        self.assertEqual(conn.send(b"y" * 25), 10)
        self.assertEqual(conn._output.written, b"y" * 10)
        self.assertEqual(conn.send(b""), 0)
        conn.sendall(b"z" * 25)
        self.assertEqual(conn._output.written, b"y" * 10 + b"z" * 25)


class TlsTest(unittest.TestCase):
    def test_tls_returns_the_hosts_session(self):
        session = types.SimpleNamespace(server_name="localhost", alpn="h2", version="TLSv1.3")
        sdk = load_sdk(with_streams=True, session=session)
        conn = sdk.Connection(types.SimpleNamespace(peer="127.0.0.1:1"), Input([]), Output(1))
        self.assertIs(conn.tls(), session)

    def test_a_world_without_tls_gets_a_clear_error(self):
        sdk = load_sdk(with_streams=True)
        conn = sdk.Connection(types.SimpleNamespace(peer="127.0.0.1:1"), Input([]), Output(1))
        with self.assertRaises(ImportError) as raised:
            conn.tls()
        self.assertIn("-w tls-stream-plugin", str(raised.exception))


class NoStreamsTest(unittest.TestCase):
    def test_a_datagram_world_gets_a_clear_error_not_a_name_error(self):
        sdk = load_sdk(with_streams=False)
        self.assertEqual(sdk.plugin_info("n", "1", "s", ["udp:1"])["name"], "n")
        with self.assertRaises(ImportError) as raised:
            sdk.Connection(None, Input([]), Output(1))
        self.assertIn("needs the wasi streams and the hub", str(raised.exception))
        self.assertIn("-w stream-plugin", str(raised.exception))
        with self.assertRaises(ImportError):
            sdk.Room("chat")


if __name__ == "__main__":
    unittest.main()
