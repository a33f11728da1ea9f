//! `GET /metrics` read by a real Prometheus parser: prometheus_client's OpenMetrics
//! parser (Python, pinned in tests/e2e/tools/requirements.txt, installed by `cargo xtask
//! test`), not a pattern. Counters and histograms move as connections come and go,
//! refusals are counted by reason (a paused listener's included), bytes are counted, the
//! hub and the process report.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::admin::{admin_addr, request};
use crate::support::*;

/// One family as the parser read it.
#[derive(Debug)]
pub struct Family {
    /// Its type: counter, gauge, histogram, …
    pub kind: String,
    /// Its unit (empty if none).
    pub unit: String,
}

/// One sample as the parser read it.
#[derive(Debug)]
pub struct Sample {
    name: String,
    value: f64,
    labels: BTreeMap<String, String>,
}

/// An exposition as prometheus_client's OpenMetrics parser read it.
#[derive(Debug)]
pub struct Exposition {
    /// By family name.
    pub families: BTreeMap<String, Family>,
    samples: Vec<Sample>,
}

/// The interpreter of the virtualenv `cargo xtask test` makes with prometheus_client.
fn python() -> String {
    match std::env::var("SWITCHBOARD_E2E_PYTHON") {
        Ok(python) => python,
        Err(_) => panic!("SWITCHBOARD_E2E_PYTHON is not set: run `cargo xtask test`, which installs the pinned prometheus_client"),
    }
}

impl Exposition {
    /// Parses `text`; fails the test with the parser's error if it is not valid OpenMetrics.
    pub fn parse(text: &str) -> Exposition {
        let python = python();
        let mut child = Command::new(&python)
            .arg(repo_file("tests/e2e/tools/read_metrics.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("running {python}: {e}"));
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert!(out.status.success(), "the OpenMetrics parser refused /metrics:\n{}\n{text}", String::from_utf8_lossy(&out.stderr));
        let (mut families, mut samples) = (BTreeMap::new(), Vec::new());
        for line in stdout.lines() {
            let fields: Vec<&str> = line.split('\t').collect();
            match fields.as_slice() {
                ["family", name, kind, unit] => {
                    families.insert(name.to_string(), Family { kind: kind.to_string(), unit: unit.to_string() });
                }
                ["sample", name, value, labels @ ..] => samples.push(Sample {
                    name: name.to_string(),
                    value: value.parse().unwrap_or_else(|_| panic!("not a number: {line}")),
                    labels: labels.chunks(2).map(|kv| (kv[0].to_string(), kv[1].to_string())).collect(),
                }),
                _ => panic!("unexpected line from the parser: {line:?}"),
            }
        }
        Exposition { families, samples }
    }

    /// The samples named `name` that carry every label in `labels`.
    fn matching<'a>(&'a self, name: &'a str, labels: &'a [(&str, &str)]) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
    }

    /// The sum of the samples named `name` with these labels (over the labels not given,
    /// e.g. every listener of a plugin); fails the test if there is none.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found: Vec<f64> = self.matching(name, labels).map(|s| s.value).collect();
        assert!(
            !found.is_empty(),
            "no sample {name} with {labels:?}; samples: {:#?}",
            self.samples.iter().map(|s| &s.name).collect::<Vec<_>>()
        );
        found.iter().sum()
    }

    /// The labels of the one sample named `name` with these labels.
    pub fn labels(&self, name: &str, labels: &[(&str, &str)]) -> BTreeMap<String, String> {
        let found: Vec<&Sample> = self.matching(name, labels).collect();
        assert_eq!(found.len(), 1, "{name} {labels:?}: {found:?}");
        found[0].labels.clone()
    }

    /// The type of family `name`.
    pub fn kind(&self, name: &str) -> &str {
        &self.families.get(name).unwrap_or_else(|| panic!("no family {name} in {:?}", self.families.keys())).kind
    }
}

/// `/metrics`, parsed.
pub fn scrape(admin: SocketAddr) -> Exposition {
    let (status, body) = request(admin, "GET", "/metrics");
    assert_eq!(status, 200, "{body}");
    Exposition::parse(&body)
}

/// Waits until `name` with `labels` reads `want` (most counts move when a connection ends).
pub fn until_value(admin: SocketAddr, name: &str, labels: &[(&str, &str)], want: f64) -> Exposition {
    let started = Instant::now();
    loop {
        let metrics = scrape(admin);
        let value = metrics.value(name, labels);
        if value == want {
            return metrics;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{name} {labels:?} never read {want}: {value}");
        thread::sleep(Duration::from_millis(50));
    }
}

const ECHO: [(&str, &str); 1] = [("plugin", "echo")];

#[test]
fn counters_and_histograms_move_as_echo_connections_come_and_go() {
    let echo = format!("{}@127.0.0.1:0", plugin("echo").display());
    let server = Server::start(&["--plugin", &echo, "--admin", "127.0.0.1:0"], 2);
    let admin = admin_addr(&server);
    let listener = server.addr(0).to_string();
    let metrics = scrape(admin);
    for (family, kind) in [
        ("switchboard_downstream_cx", "counter"),
        ("switchboard_downstream_cx_active", "gauge"),
        ("switchboard_downstream_cx_closed", "counter"),
        ("switchboard_downstream_cx_length_seconds", "histogram"),
        ("switchboard_downstream_cx_rx_bytes", "counter"),
        ("switchboard_downstream_cx_tx_bytes", "counter"),
        ("switchboard_denied_connections", "counter"),
        ("switchboard_instantiation_seconds", "histogram"),
        ("switchboard_plugin_info", "gauge"),
        ("switchboard_plugin_traps", "counter"),
        ("switchboard_plugin_quarantined", "gauge"),
        ("switchboard_plugin_reloads", "counter"),
        ("switchboard_lane_moves", "counter"),
        ("switchboard_hub_rooms", "gauge"),
        ("process_cpu_seconds", "counter"),
        ("process_resident_memory_bytes", "gauge"),
        ("process_open_fds", "gauge"),
    ] {
        assert_eq!(metrics.kind(family), kind, "{family}");
    }
    assert_eq!(metrics.families["switchboard_downstream_cx_length_seconds"].unit, "seconds");
    let tcp = [("plugin", "echo"), ("listener", listener.as_str()), ("transport", "tcp")];
    assert_eq!(metrics.value("switchboard_downstream_cx_total", &tcp), 0.0);
    assert_eq!(metrics.value("switchboard_plugin_reloads_total", &[("plugin", "echo"), ("result", "ok")]), 1.0, "the first load");

    const N: usize = 7;
    let mut sent = 0;
    for i in 0..N {
        let message = format!("hello {i}");
        seed_echo_client(server.addr(0), &[message.as_bytes()]);
        sent += message.len();
    }
    let metrics = until_value(admin, "switchboard_downstream_cx_closed_total", &[("plugin", "echo"), ("reason", "remote")], N as f64);
    assert_eq!(metrics.value("switchboard_downstream_cx_total", &tcp), N as f64);
    assert_eq!(metrics.value("switchboard_downstream_cx_active", &ECHO), 0.0);
    assert_eq!(metrics.value("switchboard_downstream_cx_rx_bytes_total", &ECHO), sent as f64);
    assert_eq!(metrics.value("switchboard_downstream_cx_tx_bytes_total", &ECHO), (sent + 6 * N) as f64, "`Echo=>` + each message");
    assert_eq!(metrics.value("switchboard_downstream_cx_length_seconds_count", &ECHO), N as f64);
    assert_eq!(metrics.value("switchboard_downstream_cx_length_seconds_bucket", &[("plugin", "echo"), ("le", "+Inf")]), N as f64);
    assert!(metrics.value("switchboard_downstream_cx_length_seconds_sum", &ECHO) > 0.0);
    assert_eq!(metrics.value("switchboard_instantiation_seconds_count", &ECHO), N as f64);
    let under_a_second = metrics.value("switchboard_instantiation_seconds_bucket", &[("plugin", "echo"), ("le", "1.0")]);
    assert_eq!(under_a_second, N as f64, "a pooled Rust instance takes microseconds");
    assert_eq!(metrics.value("switchboard_downstream_cx_closed_total", &[("plugin", "echo"), ("reason", "trap")]), 0.0);
    assert_eq!(metrics.value("switchboard_plugin_traps_total", &ECHO), 0.0);

    // An open connection is active until it goes.
    let mut open = connect(server.addr(0));
    open.write_all(b"x").unwrap();
    assert_eq!(read_n(&mut open, 7), b"Echo=>x");
    assert_eq!(scrape(admin).value("switchboard_downstream_cx_active", &tcp), 1.0);
    drop(open);
    let metrics = until_value(admin, "switchboard_downstream_cx_active", &ECHO, 0.0);
    assert_eq!(metrics.value("switchboard_downstream_cx_total", &ECHO), (N + 1) as f64);

    let info = metrics.labels("switchboard_plugin_info", &ECHO);
    assert_eq!(info["version"], "0.1.0");
    assert_eq!(info["world"], "full-plugin");
    assert!(info["hash"].len() == 64 && info["hash"].bytes().all(|b| b.is_ascii_hexdigit()), "{info:?}");
    assert_eq!(metrics.value("switchboard_plugin_info", &ECHO), 1.0);
    assert!(metrics.value("process_resident_memory_bytes", &[]) > 1e6);
    assert!(metrics.value("process_open_fds", &[]) >= 3.0);
    assert!(metrics.value("process_cpu_seconds_total", &[]) > 0.0);
}

#[test]
fn refusals_are_counted_by_reason() {
    let echo = format!("{}@127.0.0.1:0", plugin("echo").display());
    let server = Server::start(&["--plugin", &echo, "--admin", "127.0.0.1:0", "--max-per-ip", "2"], 2);
    let admin = admin_addr(&server);
    let (served, refused, held) = crate::limits::admitted(server.addr(0), 5);
    assert_eq!((served, refused), (2, 3));
    let per_ip = [("plugin", "echo"), ("reason", "per_ip")];
    let metrics = until_value(admin, "switchboard_denied_connections_total", &per_ip, 3.0);
    assert_eq!(metrics.value("switchboard_denied_connections_total", &[("plugin", "echo"), ("reason", "cidr")]), 0.0);
    assert_eq!(metrics.value("switchboard_downstream_cx_active", &ECHO), 2.0, "the refused ones were never open");
    drop(held);
    // A paused listener refuses too.
    let (status, json) = crate::admin::api(admin, "POST", "/api/listeners/echo/pause", &[]);
    assert_eq!(status, 200, "{json}");
    assert_eq!(crate::limits::admitted(server.addr(0), 1).0, 0, "a paused listener served");
    until_value(admin, "switchboard_denied_connections_total", &[("plugin", "echo"), ("reason", "paused")], 1.0);
    drop(server);

    let server = Server::start(&["--plugin", &echo, "--admin", "127.0.0.1:0", "--deny", "127.0.0.0/8"], 2);
    let admin = admin_addr(&server);
    assert_eq!(crate::limits::admitted(server.addr(0), 4).0, 0);
    let metrics = until_value(admin, "switchboard_denied_connections_total", &[("plugin", "echo"), ("reason", "cidr")], 4.0);
    assert_eq!(metrics.value("switchboard_denied_connections_total", &per_ip), 0.0);
    assert_eq!(metrics.value("switchboard_downstream_cx_total", &ECHO), 0.0);
}

#[test]
fn datagrams_are_counted_answered_with_their_bytes() {
    let echo = format!("{}@udp:127.0.0.1:0", plugin("echo").display());
    let server = Server::start(&["--plugin", &echo, "--admin", "127.0.0.1:0"], 2);
    let admin = admin_addr(&server);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut buf = [0u8; 64];
    for _ in 0..3 {
        socket.send_to(b"ping", server.addr(0)).unwrap();
        let (n, _) = socket.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"Echo=>ping");
    }
    let udp = [("plugin", "echo"), ("transport", "udp")];
    let metrics = until_value(admin, "switchboard_udp_datagrams_answered_total", &udp, 3.0);
    assert_eq!(metrics.value("switchboard_downstream_cx_rx_bytes_total", &udp), 12.0);
    assert_eq!(metrics.value("switchboard_downstream_cx_tx_bytes_total", &udp), 30.0);
    assert_eq!(metrics.value("switchboard_downstream_cx_active", &udp), 0.0, "an answered datagram is no longer active");
    assert_eq!(metrics.value("switchboard_instantiation_seconds_count", &udp), 3.0);
    assert_eq!(metrics.value("switchboard_udp_datagrams_dropped_total", &udp), 0.0, "summed over every reason");
}

#[test]
fn the_hub_reports_rooms_members_and_messages() {
    let chat = format!("{}@127.0.0.1:0", plugin("chat").display());
    let server = Server::start(&["--plugin", &chat, "--admin", "127.0.0.1:0"], 2);
    let admin = admin_addr(&server);
    assert_eq!(scrape(admin).value("switchboard_hub_members", &[]), 0.0);
    let mut first = LineClient::connect(server.addr(0));
    first.line();
    let mut second = LineClient::connect(server.addr(0));
    second.line();
    assert!(first.line().starts_with("Client joined"));
    second.send("hello\n");
    assert!(first.line().ends_with("hello"));
    let metrics = scrape(admin);
    assert_eq!(metrics.value("switchboard_hub_members", &[]), 2.0);
    assert_eq!(metrics.value("switchboard_hub_rooms", &[]), 1.0);
    assert!(metrics.value("switchboard_hub_messages_total", &[]) >= 2.0, "a join and a line at least");
    assert_eq!(metrics.value("switchboard_hub_dropped_members_total", &[]), 0.0);
    drop((first, second));
    let metrics = until_value(admin, "switchboard_hub_members", &[], 0.0);
    assert_eq!(metrics.value("switchboard_hub_rooms", &[]), 0.0);
}

#[test]
fn traps_quarantine_and_the_heavy_lane_are_counted() {
    let trap = format!("{}@127.0.0.1:0", fixture("misbehave").display());
    let server = Server::start(&["--plugin", &trap, "--set", "misbehave.MODE=trap-on-read", "--admin", "127.0.0.1:0"], 2);
    let admin = admin_addr(&server);
    let misbehave = [("plugin", "misbehave")];
    let trap_once = || {
        let mut s = connect(server.addr(0));
        let _ = s.write_all(b"boom");
        let _ = std::io::Read::read(&mut s, &mut [0u8; 16]);
    };
    trap_once();
    // The trap is accounted just after the connection closes: wait for the quarantine
    // before the next connection, which then starts in the heavy lane.
    until_value(admin, "switchboard_plugin_quarantined", &misbehave, 1.0);
    trap_once();
    // A connection's close is counted after the rest of it (its trap too).
    let metrics = until_value(admin, "switchboard_downstream_cx_closed_total", &[("plugin", "misbehave"), ("reason", "trap")], 2.0);
    assert_eq!(metrics.value("switchboard_plugin_traps_total", &misbehave), 2.0);
    assert_eq!(metrics.value("switchboard_plugin_quarantined", &misbehave), 1.0, "a trap starts a quarantine");
    let moved = metrics.value("switchboard_lane_moves_total", &[("plugin", "misbehave"), ("reason", "quarantined")]);
    assert_eq!(moved, 1.0, "the connection after the first trap started in the heavy lane");
}

#[test]
fn endings_say_who_ended_the_connection() {
    // getfile returns once the file is sent, while its client is still connected: local.
    let dir = std::env::temp_dir().join(format!("switchboard-metrics-endings-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("note.txt"), "a small file\n").unwrap();
    let getfile = format!("{}@127.0.0.1:0", plugin("getfile").display());
    let grant = format!("getfile={}", dir.display());
    let server = Server::start(&["--plugin", &getfile, "--dir", &grant, "--admin", "127.0.0.1:0"], 2);
    let admin = admin_addr(&server);
    let mut s = connect(server.addr(0));
    s.write_all(b"note.txt\n").unwrap();
    let mut got = Vec::new();
    std::io::Read::read_to_end(&mut s, &mut got).unwrap();
    assert_eq!(got, b"a small file\n");
    let getfile = [("plugin", "getfile")];
    let metrics = until_value(admin, "switchboard_downstream_cx_closed_total", &[("plugin", "getfile"), ("reason", "local")], 1.0);
    assert_eq!(metrics.value("switchboard_downstream_cx_closed_total", &getfile), 1.0, "one ending, one reason");
    assert_eq!(metrics.value("switchboard_downstream_cx_tx_bytes_total", &getfile), 13.0);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);

    // A quiet echo connection is ended by the idle timeout: a limit, by its kind.
    let echo = format!("{}@127.0.0.1:0", plugin("echo").display());
    let server = Server::start(&["--plugin", &echo, "--idle-timeout", "1s", "--admin", "127.0.0.1:0"], 2);
    let admin = admin_addr(&server);
    let mut quiet = connect(server.addr(0));
    assert_eq!(std::io::Read::read(&mut quiet, &mut [0u8; 16]).unwrap_or(0), 0, "closed, not answered");
    let idle = [("plugin", "echo"), ("reason", "limit_idle")];
    let metrics = until_value(admin, "switchboard_downstream_cx_closed_total", &idle, 1.0);
    assert_eq!(metrics.value("switchboard_plugin_limit_hits_total", &ECHO), 1.0);
    assert_eq!(metrics.value("switchboard_downstream_cx_closed_total", &ECHO), 1.0, "one ending, one reason");
}
