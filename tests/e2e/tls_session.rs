//! What a plugin learns about its TLS session through `switchboard:plugin/tls` (WIT
//! 0.1.2): the `tls-whoami` fixture writes back the server name (SNI), the ALPN protocol,
//! the version, the cipher suite and the verified client certificate, and real clients
//! (`openssl s_client`, Python's `ssl`) check them against what they sent.

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};

use crate::support::*;
use crate::tls_peers::{Pki, Usage, python};

/// `openssl s_client` to `addr` with ARGS, verifying the server against `ca`; returns
/// what the plugin wrote before it closed.
fn s_client(addr: SocketAddr, ca: &str, args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &addr.to_string(), "-CAfile", ca, "-verify_return_error", "-quiet"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("openssl s_client (Debian package openssl; .ci/run installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains("version: "), "s_client {args:?} got {text:?}; stderr:\n{}", String::from_utf8_lossy(&out.stderr));
    text
}

/// The value of `field: value` in the plugin's answer.
fn field<'a>(text: &'a str, name: &str) -> &'a str {
    let prefix = format!("{name}: ");
    text.lines().find_map(|l| l.strip_prefix(&prefix)).unwrap_or_else(|| panic!("no {name} in {text:?}"))
}

/// A client certificate NAME.pem issued by `ca` with DNS, IP, email and URI SANs.
fn client_with_sans(pki: &Pki, name: &str, ca: &str) {
    let sans = "subjectAltName=DNS:alice.example,IP:192.0.2.7,email:alice@example.org,URI:spiffe://example.org/alice";
    pki.leaf_as(name, ca, "/O=Example Org/CN=alice", &["extendedKeyUsage=clientAuth", sans]);
}

/// Serves tls-whoami on a tls: listener (a `[tls]` sidecar table offering ALPN
/// `echo/1` and `sb/2`) and on a plain tcp: one.
fn whoami_server(pki: &Pki, client_cert: Option<&str>) -> (Server, SocketAddr, SocketAddr) {
    let dir = pki.path("plugins");
    std::fs::create_dir_all(&dir).unwrap();
    let dir = std::path::PathBuf::from(dir);
    std::fs::copy(fixture("tls-whoami"), dir.join("whoami.wasm")).unwrap();
    let mut sidecar = format!(
        "listen = [\"tls:127.0.0.1:0\", \"127.0.0.1:0\"]\n[tls]\ncert = {:?}\nkey = {:?}\nalpn = [\"echo/1\", \"sb/2\"]\n",
        pki.path("server.pem"),
        pki.path("server.key")
    );
    if let Some(mode) = client_cert {
        sidecar.push_str(&format!("client-ca = {:?}\nclient-cert = \"{mode}\"\n", pki.path("ca.pem")));
    }
    std::fs::write(dir.join("whoami.toml"), sidecar).unwrap();
    let server = Server::start(&["--plugins", &dir.display().to_string()], 2);
    let tls = server.urls.iter().find(|(_, u)| u.starts_with("tls://")).expect("a tls listener").1.clone();
    let tcp = server.urls.iter().find(|(_, u)| u.starts_with("tcp://")).expect("a tcp listener").1.clone();
    let addr = |u: &str| u.split("://").nth(1).unwrap().parse().unwrap();
    (server, addr(&tls), addr(&tcp))
}

#[test]
fn sni_alpn_version_and_cipher_reach_the_plugin_and_plain_tcp_sees_none() {
    let pki = Pki::new("session");
    pki.ca("ca");
    pki.leaf("server", "ca", Usage::Server);
    let ca = pki.path("ca.pem");
    let (server, tls, tcp) = whoami_server(&pki, None);

    let text = s_client(tls, &ca, &["-servername", "localhost", "-alpn", "echo/1,h2", "-tls1_3"]);
    assert_eq!(field(&text, "server-name"), "localhost", "{text}");
    assert_eq!(field(&text, "alpn"), "echo/1", "the first of the listener's protocols the client offers: {text}");
    assert_eq!(field(&text, "version"), "TLSv1.3", "{text}");
    assert!(field(&text, "cipher-suite").starts_with("TLS13_"), "{text}");
    assert_eq!(field(&text, "client-certificate"), "-", "{text}");

    // No SNI (s_client -noservername), no ALPN, TLS 1.2.
    let text = s_client(tls, &ca, &["-noservername", "-tls1_2"]);
    assert_eq!((field(&text, "server-name"), field(&text, "alpn"), field(&text, "version")), ("-", "-", "TLSv1.2"), "{text}");
    assert!(field(&text, "cipher-suite").starts_with("TLS_ECDHE_"), "{text}");

    // Python's ssl: server_hostname and set_alpn_protocols.
    let script = format!(
        "import socket, ssl\nctx = ssl.create_default_context(cafile={ca:?})\nctx.set_alpn_protocols(['sb/2'])\n\
         with socket.create_connection(('{ip}', {port})) as raw:\n    with ctx.wrap_socket(raw, server_hostname='localhost') as s:\n\
         \x20       data = b''\n        while True:\n            chunk = s.recv(4096)\n            if not chunk: break\n            data += chunk\n\
         print(data.decode(), end='')\n",
        ip = tls.ip(),
        port = tls.port()
    );
    let out = Command::new(python()).args(["-c", &script]).stdin(Stdio::null()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "python ssl client: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!((field(&text, "server-name"), field(&text, "alpn")), ("localhost", "sb/2"), "{text}");

    // The same plugin over plain TCP has no session.
    let mut plain = String::new();
    TcpStream::connect(tcp).unwrap().read_to_string(&mut plain).unwrap();
    assert_eq!(plain, "tls: none\n");
    drop(server);
}

#[test]
fn a_verified_client_certificate_reaches_the_plugin_with_subject_sans_and_fingerprint() {
    let pki = Pki::new("session-mtls");
    pki.ca("ca");
    pki.leaf("server", "ca", Usage::Server);
    client_with_sans(&pki, "alice", "ca");
    let ca = pki.path("ca.pem");
    let (_server, tls, _) = whoami_server(&pki, Some("optional"));

    let text = s_client(tls, &ca, &["-cert", &pki.path("alice.pem"), "-key", &pki.path("alice.key")]);
    assert_eq!(field(&text, "client-subject"), "CN=alice,O=Example Org", "RFC 4514 order, last RDN first: {text}");
    assert_eq!(
        field(&text, "client-sans"),
        "DNS:alice.example, IP:192.0.2.7, email:alice@example.org, URI:spiffe://example.org/alice",
        "{text}"
    );
    assert_eq!(field(&text, "client-sha256"), pki.fingerprint("alice"), "{text}");

    // Optional and absent: no certificate, and the plugin is told so.
    let text = s_client(tls, &ca, &[]);
    assert_eq!(field(&text, "client-certificate"), "-", "{text}");
}

/// `switchboard ARGS` that must succeed: its stdout.
fn run_ok(args: &[&str]) -> String {
    let (code, out, err) = run(args);
    assert_eq!(code, 0, "switchboard {args:?}: {err}");
    out
}

#[test]
fn check_lists_the_host_interfaces_a_plugin_imports() {
    let whoami = run_ok(&["check", &fixture("tls-whoami").display().to_string()]);
    assert!(whoami.contains("\n  imports  tls\n"), "{whoami}");
    let chat = run_ok(&["check", &plugin("chat").display().to_string()]);
    assert!(chat.contains("\n  imports  hub\n"), "{chat}");
    let echo = run_ok(&["check", &plugin("echo").display().to_string()]);
    assert!(echo.contains("\n  imports  (no host interfaces)\n"), "{echo}");
}
