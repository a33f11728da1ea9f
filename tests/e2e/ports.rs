//! Loopback ports for outside programs that must be given a number
//! (`systemd-socket-activate -l`, `redis-server --port`, HAProxy's `bind`).
//!
//! Binding `127.0.0.1:0`, reading the port and closing the socket leaves a window in
//! which another test's `bind(0)` or outgoing connection may be given the same port; a
//! client that then connects "to the program" reaches that other test instead (CI once
//! saw a reset from a stranger and a socket-activated service that never woke). A
//! [`ReservedPort`] keeps the port bound, with `SO_REUSEADDR` and never listening, for as
//! long as it lives: Linux hands a bound port to no `bind(0)` and to no outgoing
//! connection, while the program's own listener, which sets `SO_REUSEADDR` as all
//! three of these do, may still bind and listen on it.

use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// A TCP port on 127.0.0.1 held for an outside program; see the module docs.
pub struct ReservedPort {
    /// Holds the reservation; never listens.
    _socket: Socket,
    /// The port held.
    pub port: u16,
}

impl ReservedPort {
    /// Reserves a port the kernel picks from the ephemeral range.
    pub fn new() -> ReservedPort {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).expect("a TCP socket");
        socket.set_reuse_address(true).expect("SO_REUSEADDR");
        socket.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into()).expect("binding 127.0.0.1:0");
        let port = socket.local_addr().expect("the bound address").as_socket().expect("an IP address").port();
        ReservedPort { _socket: socket, port }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}
