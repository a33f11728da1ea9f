"""The guest SDK for switchboard plugins written in Python (componentize-py).

The Python counterpart of the Rust SDK in ``plugins/sdk``: the streams the host hands a
plugin become a :class:`Connection` with the socket-like methods the seed scripts use
(``recv``, ``readline``, ``sendall``), a hub room becomes a :class:`Room`, and
:func:`serve` runs a handler the way the Rust SDK's export macros do. A plugin is a module
that defines the classes componentize-py looks for (``Meta``, ``Handler`` and, in the
``full-plugin`` world, ``DatagramHandler``)::

    from switchboard_sdk import plugin_info, serve

    class Meta:
        def describe(self):
            return plugin_info("hello", "0.1.0", "says hello", ["tcp:4000"])

    def hello(conn):
        conn.sendall(b"hello\\r\\n")

    class Handler:
        def handle_connection(self, info, input, output):
            serve(hello, info, input, output)

Build: ``componentize-py -d wit -w stream-plugin componentize app -p DIR -p plugins/python
-o NAME.wasm`` (DIR holds ``app.py``; ``cargo xtask build`` does this for the plugins
here). Settings arrive as environment variables (:func:`setting` or
``os.environ``).

Pollables are children of the stream or member they watch: this module drops them
first, in :meth:`Connection.close` and :meth:`Room.close`, which :func:`serve`, ``with``
blocks and garbage collection all call.
"""

import os
import sys
import traceback

from componentize_py_types import Err
from wit_world.imports.types import PluginInfo

try:
    from wit_world.imports import hub
    from wit_world.imports.poll import poll
    from wit_world.imports.streams import StreamError_Closed

    _NO_STREAMS = None
except ImportError as e:
    # The datagram-plugin world has no streams and no hub: plugin_info and setting still
    # work, and Connection, Room and serve say why they cannot (see _need_streams).
    hub = poll = StreamError_Closed = None
    _NO_STREAMS = e

from .framing import LineSplitter

__all__ = ["Connection", "Room", "HubError", "LineSplitter", "INPUT", "ROOM", "plugin_info", "setting", "serve"]

#: Bytes asked for per read from the host; large reads keep bulk transfers cheap.
READ_CHUNK = 64 * 1024

#: What :meth:`Connection.wait` returns: input (or its end) can be read without blocking.
INPUT = "input"
#: What :meth:`Connection.wait` returns: a message is waiting in the room.
ROOM = "room"


def plugin_info(name, version, summary, listen):
    """A plugin's self-description, as ``describe()`` returns it."""
    return PluginInfo(name=name, version=version, summary=summary, listen=list(listen))


def setting(key, default):
    """A setting (an environment variable the operator set), or ``default`` if unset."""
    return os.environ.get(key, default)


def _need_streams(what):
    """Raises a clear ``ImportError`` if this component's world lacks the streams and the
    hub that ``what`` needs (instead of a ``NameError`` deep inside it later)."""
    if _NO_STREAMS is not None:
        raise ImportError(
            f"switchboard_sdk.{what} needs the wasi streams and the hub, which this component's WIT world "
            f"does not import ({_NO_STREAMS}): build it with `componentize-py -w stream-plugin` "
            "(or full-plugin); a datagram-plugin can use only plugin_info and setting"
        ) from _NO_STREAMS


def _stream_error(err):
    """The socket-style exception for a wasi ``stream-error``: ``BrokenPipeError`` when the
    stream is closed, ``ConnectionResetError`` with the host's text when it failed."""
    if isinstance(err.value, StreamError_Closed):
        return BrokenPipeError("the connection is closed")
    return ConnectionResetError(err.value.value.to_debug_string())


def _drop(resource):
    """Drops a wasi resource now (rather than whenever the garbage collector does)."""
    if resource is not None:
        resource.__exit__(None, None, None)


class _Holder:
    """Owns wasi resources, dropped in the order of ``_OWNED`` (children such as
    pollables before their parents) by :meth:`close`, ``with`` or garbage collection."""

    _OWNED = ()

    def close(self):
        """Drops the resources this object holds."""
        for name in self._OWNED:
            _drop(self.__dict__.pop(name, None))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()


class Connection(_Holder):
    """One conversation: the peer's bytes in, ours out; a socket-like object.

    ``recv`` returns ``b""`` at the end of the peer's stream. Writes go out as the host
    accepts them (it applies backpressure when the peer does not read); ``sendall``
    writes all and flushes, ``send`` writes what the host takes at once and returns the
    count, like ``socket.send``. A reset connection raises ``ConnectionResetError``, writing to a
    closed one ``BrokenPipeError``.
    """

    def __init__(self, info, input, output):
        _need_streams("Connection")
        #: The host's ``connection-info`` (``id``, ``transport``, ``role``, ``peer``, ``local``).
        self.info = info
        self._input = input
        self._output = output
        self._input_ready = input.subscribe()
        self._output_ready = output.subscribe()
        self._buf = b""
        self._pos = 0
        self._eof = False

    @property
    def peer(self):
        """The peer's address (``HOST:PORT``), or the device path of a serial line."""
        return self.info.peer

    def tls(self):
        """The TLS session the connection arrived over (a ``tls:`` listener), or ``None``
        over plain TCP, serial and dialed connections: a record with ``server_name``
        (SNI), ``alpn``, ``version``, ``cipher_suite`` and ``client_certificate`` (the
        verified client certificate's ``subject``, ``sans`` and ``sha256``, or ``None``).

        Needs a component built for a world that imports ``switchboard:plugin/tls``
        (``componentize-py -w tls-stream-plugin``, or ``tls-full-plugin``); otherwise
        raises ``ImportError`` saying so.
        """
        try:
            from wit_world.imports import tls
        except ImportError as e:
            raise ImportError(
                "Connection.tls needs switchboard:plugin/tls, which this component's WIT world does not "
                "import: build it with `componentize-py -w tls-stream-plugin` (or tls-full-plugin)"
            ) from e
        return tls.session()

    # -- reading ---------------------------------------------------------------

    def _more(self):
        """Whether unconsumed bytes are buffered, reading from the host (blocking) only if
        there are none; ``False`` at the end of the stream."""
        while self._pos == len(self._buf) and not self._eof:
            try:
                self._buf = self._input.blocking_read(READ_CHUNK)
                self._pos = 0
            except Err as e:
                if isinstance(e.value, StreamError_Closed):
                    self._eof = True
                else:
                    raise _stream_error(e) from None
        return self._pos < len(self._buf)

    def fill(self):
        """The bytes received and not yet consumed, reading from the host (blocking) only
        if there are none; empty at the end of the stream. Pair with :meth:`consume`.

        A ``memoryview`` of the SDK's buffer, so nothing is copied: valid until the next
        read, ``bytes(view)`` keeps it."""
        if not self._more():
            return memoryview(b"")
        return memoryview(self._buf)[self._pos :]

    def consume(self, n):
        """Marks ``n`` bytes of :meth:`fill`'s result as used."""
        self._pos = min(self._pos + n, len(self._buf))

    def recv(self, bufsize=READ_CHUNK):
        """At most ``bufsize`` bytes, as soon as any are there; ``b""`` at the end."""
        if bufsize <= 0 or not self._more():
            return b""
        start, end = self._pos, min(len(self._buf), self._pos + bufsize)
        self._pos = end
        return self._buf if start == 0 and end == len(self._buf) else self._buf[start:end]

    read = recv

    def readline(self, limit=-1):
        """One line including its ``\\n`` (``b""`` at the end of the stream, the unterminated
        rest just before it). With ``limit`` >= 0, at most ``limit`` bytes are returned,
        like ``io.BufferedReader.readline``: check for the ``\\n`` to see whether it ended.

        Each byte received is copied once, into the line it belongs to: many short lines
        in one 64 KiB read cost no more than one long one."""
        parts = []
        size = 0
        while (limit < 0 or size < limit) and self._more():
            buf, start = self._buf, self._pos
            stop = len(buf) if limit < 0 else min(len(buf), start + limit - size)
            newline = buf.find(b"\n", start, stop)
            end = newline + 1 if newline >= 0 else stop
            parts.append(buf[start:end])
            size += end - start
            self._pos = end
            if newline >= 0:
                break
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def wait(self, room):
        """Blocks until input can be read or a message waits in ``room``: :data:`INPUT`
        or :data:`ROOM`; input wins a tie."""
        if self._pos < len(self._buf) or self._eof:
            return INPUT
        ready = poll([self._input_ready, room.pollable])
        return INPUT if 0 in ready else ROOM

    # -- writing ---------------------------------------------------------------

    def write(self, data):
        """Writes all of ``data`` (without flushing), waiting while the host is full."""
        view = memoryview(data)
        while view:
            permit = self._check_write()
            if permit == 0:
                self._output_ready.block()
                continue
            n = min(len(view), permit)
            try:
                self._output.write(bytes(view[:n]))
            except Err as e:
                raise _stream_error(e) from None
            view = view[n:]

    def flush(self):
        """Waits until everything written has been handed to the host."""
        try:
            self._output.flush()
        except Err as e:
            raise _stream_error(e) from None
        # `check-write` reports 0 until the flush has completed.
        while self._check_write() == 0:
            self._output_ready.block()

    def sendall(self, data):
        """Writes all of ``data`` and flushes it, like a socket's ``sendall``."""
        self.write(data)
        self.flush()

    def send(self, data):
        """Writes as much of ``data`` as the host takes at once (waiting until it takes
        some), flushes it, and returns how many bytes that was, like a socket's ``send``:
        a large ``data`` may be sent in part. ``0`` for empty ``data``."""
        view = memoryview(data)
        if not view:
            return 0
        while (permit := self._check_write()) == 0:
            self._output_ready.block()
        n = min(len(view), permit)
        try:
            self._output.write(bytes(view[:n]))
        except Err as e:
            raise _stream_error(e) from None
        self.flush()
        return n

    def _check_write(self):
        try:
            return self._output.check_write()
        except Err as e:
            raise _stream_error(e) from None

    # -- lifetime --------------------------------------------------------------

    @property
    def closed(self):
        """Whether :meth:`close` was called."""
        return "_output" not in self.__dict__

    # The pollables, then the streams (the host then closes the connection).
    _OWNED = ("_input_ready", "_output_ready", "_input", "_output")


class HubError(Exception):
    """The hub refused a call; ``reason`` is the WIT ``hub-error`` case: ``name-too-long``,
    ``message-too-large``, ``too-many-members`` or ``over-budget``."""

    def __init__(self, err):
        self.reason = _HUB_ERRORS.get(err.value, str(err.value))
        super().__init__(self.reason)


_HUB_ERRORS = (
    {
        hub.HubError.NAME_TOO_LONG: "name-too-long",
        hub.HubError.MESSAGE_TOO_LARGE: "message-too-large",
        hub.HubError.TOO_MANY_MEMBERS: "too-many-members",
        hub.HubError.OVER_BUDGET: "over-budget",
    }
    if hub is not None
    else {}  # the datagram-plugin world has no hub
)


class Room(_Holder):
    """Membership of one hub room; leaving is :meth:`close` (or the end of a ``with``).

    A message published reaches every *other* member. The host keeps a bounded queue per
    member; a member that falls too far behind is removed and its connection closed.
    The host's bounds (names at most 256 bytes, 16 rooms per connection, messages at most
    64 KiB, 8 MiB and 1,000 messages per second per member) raise :class:`HubError`.
    """

    def __init__(self, name):
        _need_streams("Room")
        try:
            self._member = hub.Member.join(name)
        except Err as e:
            raise HubError(e) from None
        #: The pollable that is ready when a message is waiting (see :meth:`Connection.wait`).
        self.pollable = self._member.subscribe()

    def publish(self, msg):
        """Sends ``msg`` (bytes, at most 64 KiB) to every other member; raises
        :class:`HubError` when the hub refuses it (the message was not sent)."""
        try:
            self._member.try_publish(bytes(msg))
        except Err as e:
            raise HubError(e) from None

    def try_recv(self):
        """The next waiting message, or ``None`` (never blocks)."""
        return self._member.try_recv()

    def recv(self):
        """Blocks until a message is waiting, then returns it."""
        while (msg := self._member.try_recv()) is None:
            self.pollable.block()
        return msg

    def count(self):
        """Number of members, this one included."""
        return self._member.count()

    def set_name(self, name):
        """Sets this member's display name (initially the connection's peer address);
        raises :class:`HubError` for a name longer than 256 bytes."""
        try:
            self._member.try_set_name(name)
        except Err as e:
            raise HubError(e) from None

    def names(self):
        """Display names of the members (at most the 1,000 oldest), oldest first."""
        return self._member.names()

    # Leaving the room: the pollable, then the membership.
    _OWNED = ("pollable", "_member")


def serve(handle, info, input, output):
    """Runs ``handle(conn)`` on the streams ``handle-connection`` was given, as the Rust
    SDK's export macros do.

    What was written is delivered whether ``handle`` returns or raises; a peer that has
    gone away (``BrokenPipeError`` or ``ConnectionResetError``, from ``handle`` or while
    flushing) ends the conversation quietly: it is not an error of the plugin's. Any
    other exception becomes the ``err`` the host logs: ``Err(msg)`` as raised, another
    ``OSError`` by its message, anything else with its traceback printed to the host log
    first.
    """
    _need_streams("serve")
    conn = Connection(info, input, output)
    try:
        failure = None
        try:
            handle(conn)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the peer reset or went away while we wrote: not the plugin's error
        except Err as e:
            failure = e
        except OSError as e:
            failure = Err(str(e))
        except Exception as e:
            traceback.print_exc(file=sys.stderr)
            failure = Err(f"{type(e).__name__}: {e}")
        try:
            if not conn.closed:
                conn.flush()
        except BrokenPipeError:
            pass
        except OSError as e:
            failure = failure or Err(f"flushing output: {e}")
        if failure is not None:
            raise failure
    finally:
        conn.close()
