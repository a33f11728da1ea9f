//! Listeners: where conversations come from. Binding (or opening) each transport's
//! listener, printing its `listening NAME URL` line, and the accept/receive loops of
//! [`tcp`], [`udp`] and [`serial`], which all start conversations the same way
//! ([`conversation`]).

pub(crate) mod activation;
pub(crate) mod conversation;
pub(crate) mod serial;
pub(crate) mod tcp;
pub(crate) mod udp;
pub(crate) mod udp_guard;

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admission::Admission;
use crate::config::{Listen, UdpOptions};
use crate::instance::plugin::Plugin;
use crate::instance::runtime::Runtime;
use crate::service::Service;
use crate::session::record::{RecordDir, Recorders};

/// A listener's pause switch (the admin API's pause/resume): while set, it stops taking
/// new conversations; open ones go on.
pub(crate) type Paused = Arc<AtomicBool>;

/// What every listener task needs from the server.
#[derive(Clone)]
pub(crate) struct Shared {
    /// The runtime.
    pub(crate) rt: Arc<Runtime>,
    /// Who may connect, and how many at once.
    pub(crate) admission: Arc<Admission>,
    /// Cancelled when the drain starts: every open conversation is told (its input ends
    /// once nothing more is in flight; see `Closer::drain`).
    pub(crate) draining: CancellationToken,
    /// Cancelled when the drain timeout runs out: every open conversation is closed.
    pub(crate) close_all: CancellationToken,
    /// Tracks every task, for the drain at shutdown.
    pub(crate) tracker: TaskTracker,
    /// `--record DIR`: where each TCP connection's transcript goes; `None`: not recorded
    /// (unless its plugin's own `record` says where).
    pub(crate) record: Option<RecordDir>,
    /// The record directories plugins' `record` settings name.
    pub(crate) recorders: Recorders,
}

impl Shared {
    /// The drain's two tokens, for [`conversation::closed_at_drain_timeout`].
    pub(crate) fn drain_tokens(&self) -> (CancellationToken, CancellationToken) {
        (self.draining.clone(), self.close_all.clone())
    }
}

/// Why a listener could not be started for a plugin.
#[derive(Debug, thiserror::Error)]
pub enum ListenerError {
    /// A listener the plugin cannot serve.
    #[error("plugin {plugin} on {listen}: the plugin is a {world} and exports no {missing}, so it cannot serve {transport}")]
    Unsupported {
        /// Plugin name.
        plugin: String,
        /// The listener.
        listen: Listen,
        /// The plugin's world.
        world: &'static str,
        /// The export it lacks.
        missing: &'static str,
        /// What the listener carries.
        transport: &'static str,
    },
    /// Binding (or opening the device) failed.
    #[error("plugin {plugin}: cannot listen on {listen}")]
    Bind {
        /// Plugin name.
        plugin: String,
        /// The listener.
        listen: Listen,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// A bound listener of any transport, not yet serving.
pub(crate) enum BoundListener {
    Tcp(TcpListener),
    Udp(udp::UdpListener),
    Serial(serial::SerialLine),
}

impl BoundListener {
    /// Where it listens, as its `listening` line shows it: `tcp://ADDR`, `udp://ADDR`,
    /// `serial://DEVICE`.
    pub(crate) fn url(&self) -> String {
        match self {
            BoundListener::Tcp(listener) => format!("tcp://{}", listener.local_addr().map(|a| a.to_string()).unwrap_or_default()),
            BoundListener::Udp(socket) => format!("udp://{}", socket.local_addr().map(|a| a.to_string()).unwrap_or_default()),
            BoundListener::Serial(line) => format!("serial://{}", line.device()),
        }
    }

    /// Prints the `listening NAME URL` line and starts serving `service` on it.
    /// Serving stops when `stop` is cancelled (the listener is dropped, so new
    /// connections are refused); conversations already open finish. While `paused` is
    /// set, a TCP or UDP listener takes no new conversations (a serial line is one
    /// conversation and is not paused).
    pub(crate) fn start(self, service: &Arc<Service>, shared: &Shared, stop: CancellationToken, paused: Paused) {
        let transport = match &self {
            BoundListener::Tcp(_) => "tcp",
            BoundListener::Udp(_) => "udp",
            BoundListener::Serial(_) => "serial",
        };
        let url = self.url();
        let address = url.split_once("://").map_or_else(String::new, |(_, address)| address.to_string());
        // Tests and scripts read these lines: one per listener, flushed at once.
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "listening {} {url}", service.name());
        let _ = stdout.flush();
        let stats = service.counters.listener(transport, address);
        let (service, task_shared) = (service.clone(), shared.clone());
        match self {
            BoundListener::Tcp(listener) => {
                shared.tracker.spawn(until_stopped(stop, tcp::run(listener, service, stats, task_shared, paused)))
            }
            BoundListener::Udp(socket) => shared.tracker.spawn(until_stopped(stop, udp::run(socket, service, stats, task_shared, paused))),
            // A serial line is one conversation: stopping its listener ends it.
            BoundListener::Serial(line) => shared.tracker.spawn(until_stopped(stop, serial::run(line, service, stats, task_shared))),
        };
    }
}

/// Runs `serving` until it ends or `stop` is cancelled.
async fn until_stopped(stop: CancellationToken, serving: impl Future<Output = ()>) {
    tokio::select! {
        () = stop.cancelled() => {}
        () = serving => {}
    }
}

/// Refuses a listener the plugin cannot serve: streams need a stream handler, datagrams
/// a datagram handler.
pub(crate) fn check_world(plugin: &Plugin, listen: &Listen) -> Result<(), ListenerError> {
    const STREAMS: &str = "stream handler (switchboard:plugin/handler)";
    const DATAGRAMS: &str = "datagram handler (switchboard:plugin/datagram-handler)";
    let (ok, missing, transport) = match listen {
        Listen::Tcp { .. } => (plugin.world.streams(), STREAMS, "TCP"),
        Listen::Serial { .. } => (plugin.world.streams(), STREAMS, "a serial line"),
        Listen::Udp { .. } => (plugin.world.datagrams(), DATAGRAMS, "UDP"),
        Listen::Systemd { name } => match activation::kind(name) {
            Some(activation::Kind::Stream) => (plugin.world.streams(), STREAMS, "TCP"),
            Some(activation::Kind::Datagram) => (plugin.world.datagrams(), DATAGRAMS, "UDP"),
            // No such socket: binding says so.
            None => (true, STREAMS, "TCP"),
        },
    };
    if ok {
        return Ok(());
    }
    Err(ListenerError::Unsupported {
        plugin: plugin.name.to_string(),
        listen: listen.clone(),
        world: plugin.world.name(),
        missing,
        transport,
    })
}

/// How listeners are bound.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct BindOptions {
    /// Settings of every UDP listener.
    pub(crate) udp: UdpOptions,
    /// Options set on TCP and UDP sockets before they bind.
    pub(crate) socket: SocketOptions,
}

/// Options set on a TCP or UDP socket before it binds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SocketOptions {
    /// `--reuse-port`: `SO_REUSEPORT`, so several processes can serve one port (the
    /// kernel spreads connections over them).
    pub(crate) reuse_port: bool,
    /// `--ipv6-only`: an IPv6 listener (`[::]:PORT`) takes IPv6 only; without it, it is
    /// dual-stack (IPv4 clients arrive as `::ffff:a.b.c.d`) whatever the host's
    /// `net.ipv6.bindv6only` says.
    pub(crate) ipv6_only: bool,
}

impl SocketOptions {
    /// Sets the options on `socket`, which is about to bind `addr`.
    fn apply(&self, socket: &socket2::SockRef<'_>, addr: std::net::SocketAddr) -> std::io::Result<()> {
        if self.reuse_port {
            socket.set_reuse_port(true)?;
        }
        if addr.is_ipv6() {
            socket.set_only_v6(self.ipv6_only)?;
        }
        Ok(())
    }
}

/// Binds (or opens, or adopts from systemd) one listener for `plugin`.
pub(crate) async fn bind(plugin: &Plugin, listen: Listen, options: BindOptions) -> Result<BoundListener, ListenerError> {
    check_world(plugin, &listen)?;
    let bind_error = |source| ListenerError::Bind { plugin: plugin.name.to_string(), listen: listen.clone(), source };
    match &listen {
        Listen::Tcp { host, port } => tcp::bind(host, *port, options.socket).await.map(BoundListener::Tcp).map_err(bind_error),
        Listen::Udp { host, port } => udp::bind(host, *port, options.udp, options.socket).await.map(BoundListener::Udp).map_err(bind_error),
        Listen::Serial { device, baud } => serial::open(device, *baud).await.map(BoundListener::Serial).map_err(bind_error),
        Listen::Systemd { name } => adopt(name, options.udp).map_err(bind_error),
    }
}

/// The socket systemd passed as `name`, as a TCP or UDP listener.
fn adopt(name: &str, udp_options: UdpOptions) -> std::io::Result<BoundListener> {
    let (fd, kind) = activation::take(name)?;
    match kind {
        activation::Kind::Stream => Ok(BoundListener::Tcp(TcpListener::from_std(std::net::TcpListener::from(fd))?)),
        activation::Kind::Datagram => udp::adopt(std::net::UdpSocket::from(fd), udp_options).map(BoundListener::Udp),
    }
}
