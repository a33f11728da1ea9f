//! TLS listeners with real outside clients ([`crate::tls_peers`]: `openssl s_client`
//! and Python's `ssl`, which handshake, check the server certificate and read the echo).
//! Client certificates required and optional, a wrong CA and an expired certificate
//! refused and counted, the handshake timeout holding an admission slot, rotation while a
//! client loop handshakes, and a bad new file that leaves the old certificate serving.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use crate::admin::admin_addr;
use crate::metrics::{scrape, until_value};
use crate::support::*;
use crate::tls_peers::{Pki, Usage, s_client_echo, tls_client, tls_client_command};

/// The address of plugin `name`'s listener.
fn addr_of(server: &Server, name: &str) -> SocketAddr {
    server.listeners.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no listener of {name}: {:?}", server.urls)).1
}

/// Waits (up to 10 s) until `name` with `labels` reads `want`; whether it did.
fn wait_for_value(admin: SocketAddr, name: &str, labels: &[(&str, &str)], want: f64) -> bool {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        if metric(admin, name, labels) == want {
            return true;
        }
        thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A value of a metric summed over its other labels.
fn metric(admin: SocketAddr, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape(admin).value(name, labels)
}

#[test]
fn echo_over_tls_with_openssl_s_client_and_python_ssl_on_tls_1_3_and_1_2() {
    let pki = Pki::new("echo");
    pki.ca("ca");
    pki.leaf("server", "ca", Usage::Server);
    let (ca, fingerprint) = (pki.path("ca.pem"), pki.fingerprint("server"));
    let spec = format!("{}@tls:127.0.0.1:0", plugin("echo").display());
    let tls = format!("echo={},{}", pki.path("server.pem"), pki.path("server.key"));
    let server = Server::start(&["--plugin", &spec, "--tls", &tls, "--admin", "127.0.0.1:0"], 2);
    let (_, url) = server.urls.iter().find(|(n, _)| n == "echo").unwrap();
    assert!(url.starts_with("tls://127.0.0.1:") && !url.ends_with(":0"), "listening echo {url}");
    let addr = addr_of(&server, "echo");

    for version in ["-tls1_3", "-tls1_2"] {
        s_client_echo(addr, &ca, version);
    }
    for version in ["1.3", "1.2"] {
        let lines = tls_client(addr, &ca, &["--tls-version", version]);
        assert_eq!(lines, [format!("ok {fingerprint} TLSv{version} Echo=>spam")]);
    }
    // A client that does not trust the certificate refuses it, and that is counted too.
    let refused = tls_client(addr, &pki.path("server.pem"), &[]);
    assert!(refused[0].starts_with("fail SSLCertVerificationError"), "{refused:?}");

    let admin = admin_addr(&server);
    let echo = [("plugin", "echo")];
    until_value(admin, "switchboard_tls_handshakes_total", &echo, 4.0);
    // A connection's close is counted last, after its handshake's failure.
    let metrics = until_value(admin, "switchboard_downstream_cx_closed_total", &[("plugin", "echo"), ("reason", "tls_handshake")], 1.0);
    let refused = [("plugin", "echo"), ("reason", "server_cert_refused")];
    assert_eq!(metrics.value("switchboard_tls_handshake_failures_total", &refused), 1.0);
    assert_eq!(metrics.labels("switchboard_tls_handshakes_total", &echo)["transport"], "tls");
    let log = server.stderr();
    let access = log.lines().find(|l| l.contains("switchboard::access")).expect("an access line");
    assert!(access.contains("transport=tls") && access.contains("outcome=ok"), "{access}");
    assert!(log.contains(&format!("tls certificate loaded plugin=echo cert_sha256={fingerprint}")), "{log}");
}

/// A `--config` file serving copies of echo as `tls-req` (client certificate required)
/// and `tls-opt` (optional), its paths relative to the file.
fn client_cert_config(pki: &Pki) -> String {
    let (req, opt) = (copy_as(&plugin("echo"), "tls-req"), copy_as(&plugin("echo"), "tls-opt"));
    let mut text = String::new();
    for (name, path, mode) in [("tls-req", req, "required"), ("tls-opt", opt, "optional")] {
        text.push_str(&format!(
            "[{name}]\npath = {:?}\nlisten = [\"tls:127.0.0.1:0\"]\n[{name}.tls]\ncert = \"server.pem\"\nkey = \"server.key\"\n\
             client-ca = \"ca.pem\"\nclient-cert = \"{mode}\"\n",
            path.display().to_string()
        ));
    }
    let file = pki.path("switchboard.toml");
    std::fs::write(&file, text).unwrap();
    file
}

#[test]
fn client_certificates_required_and_optional_wrong_ca_and_expired_refused_and_counted() {
    let pki = Pki::new("mtls");
    pki.ca("ca");
    pki.ca("other-ca");
    pki.leaf("server", "ca", Usage::Server);
    pki.leaf("client", "ca", Usage::Client);
    pki.leaf("stranger", "other-ca", Usage::Client);
    pki.expired_client("expired", "ca");
    let config = client_cert_config(&pki);
    let server = Server::start(&["--config", &config, "--admin", "127.0.0.1:0"], 3);
    let (admin, ca) = (admin_addr(&server), pki.path("ca.pem"));
    let with = |addr, name: Option<&str>| {
        let files = name.map(|n| (pki.path(&format!("{n}.pem")), pki.path(&format!("{n}.key"))));
        let args: Vec<&str> = files.as_ref().map_or(vec![], |(c, k)| vec!["--cert", c.as_str(), "--key", k.as_str()]);
        tls_client(addr, &ca, &args).join("\n")
    };
    let (req, opt) = (addr_of(&server, "tls-req"), addr_of(&server, "tls-opt"));

    assert!(with(req, Some("client")).ends_with("Echo=>spam"), "a certificate from the CA is let in");
    for (client, reason) in [(None, "no_client_cert"), (Some("stranger"), "bad_client_cert"), (Some("expired"), "expired_client_cert")] {
        let got = with(req, client);
        assert!(got.starts_with("fail "), "{client:?} on a required listener: {got}");
        let labels = [("plugin", "tls-req"), ("reason", reason)];
        let failures = || server.stderr().lines().filter(|l| l.contains("tls handshake failed")).collect::<Vec<_>>().join("\n");
        let counted = wait_for_value(admin, "switchboard_tls_handshake_failures_total", &labels, 1.0);
        assert!(counted, "{client:?}: not counted as {reason}; the failures logged:\n{}", failures());
    }
    assert!(with(opt, None).ends_with("Echo=>spam"), "no certificate is fine when optional");
    assert!(with(opt, Some("client")).ends_with("Echo=>spam"));
    let got = with(opt, Some("stranger"));
    assert!(got.starts_with("fail "), "a certificate presented must verify even when optional: {got}");
    until_value(admin, "switchboard_tls_handshake_failures_total", &[("plugin", "tls-opt"), ("reason", "bad_client_cert")], 1.0);

    // Each connection's close is counted after the rest of what it did.
    until_value(admin, "switchboard_downstream_cx_closed_total", &[("plugin", "tls-opt"), ("reason", "tls_handshake")], 1.0);
    let metrics = until_value(admin, "switchboard_downstream_cx_closed_total", &[("plugin", "tls-req"), ("reason", "tls_handshake")], 3.0);
    let verified = |plugin: &str, result: &str| {
        metrics.value("switchboard_tls_client_cert_verifications_total", &[("plugin", plugin), ("reason", result)])
    };
    assert_eq!((verified("tls-req", "ok"), verified("tls-req", "failed"), verified("tls-req", "absent")), (1.0, 2.0, 0.0));
    assert_eq!((verified("tls-opt", "ok"), verified("tls-opt", "failed"), verified("tls-opt", "absent")), (1.0, 1.0, 1.0));
    assert_eq!(metrics.value("switchboard_tls_handshakes_total", &[("plugin", "tls-req")]), 1.0);
    let log = server.stderr();
    assert!(log.contains("tls handshake failed") && log.contains("reason=no_client_cert"), "{log}");
}

#[test]
fn a_slow_handshake_holds_its_admission_slot_until_the_handshake_timeout() {
    let pki = Pki::new("timeout");
    pki.ca("ca");
    pki.leaf("server", "ca", Usage::Server);
    let slow = copy_as(&plugin("echo"), "tls-slow");
    let config = pki.path("switchboard.toml");
    let table = format!(
        "[tls-slow]\npath = {:?}\nlisten = [\"tls:127.0.0.1:0\"]\n[tls-slow.tls]\ncert = \"server.pem\"\nkey = \"server.key\"\nhandshake-timeout = \"3s\"\n",
        slow.display().to_string()
    );
    std::fs::write(&config, table).unwrap();
    let server = Server::start(&["--config", &config, "--max-per-ip", "1", "--admin", "127.0.0.1:0"], 2);
    let (admin, ca, addr) = (admin_addr(&server), pki.path("ca.pem"), addr_of(&server, "tls-slow"));
    let labels = [("plugin", "tls-slow")];

    // A client that connects and never says hello holds the one slot 127.0.0.1 has (for
    // the 3 s timeout: time enough for the refused client's interpreter to start on a
    // loaded machine).
    let started = Instant::now();
    let mut silent = connect(addr);
    until_value(admin, "switchboard_downstream_cx_active", &labels, 1.0);
    let refused = tls_client(addr, &ca, &[]);
    assert!(refused[0].starts_with("fail "), "admitted beside a handshake in progress: {refused:?}");
    until_value(admin, "switchboard_denied_connections_total", &[("plugin", "tls-slow"), ("reason", "per_ip")], 1.0);
    // The timeout ends it: the server closes, the slot is free, the failure is counted.
    let mut rest = Vec::new();
    let _ = silent.read_to_end(&mut rest);
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(2900) && waited < Duration::from_secs(15), "closed after {waited:?}");
    until_value(admin, "switchboard_tls_handshake_failures_total", &[("plugin", "tls-slow"), ("reason", "timeout")], 1.0);
    until_value(admin, "switchboard_downstream_cx_active", &labels, 0.0);
    let lines = tls_client(addr, &ca, &[]);
    assert!(lines[0].ends_with("Echo=>spam"), "{lines:?}");
}

/// Writes `contents` to `path` the way deploy tools do: a temporary file renamed over it.
fn replace(path: &str, contents: &[u8]) {
    let tmp = format!("{path}.tmp");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A server for echo on a tls: listener whose certificate and key are `live.pem` and
/// `live.key` (copies of `server`'s).
fn rotating_server(pki: &Pki) -> (Server, String, String) {
    let (cert, key) = (pki.path("live.pem"), pki.path("live.key"));
    std::fs::copy(pki.path("server.pem"), &cert).unwrap();
    std::fs::copy(pki.path("server.key"), &key).unwrap();
    let spec = format!("{}@tls:127.0.0.1:0", plugin("echo").display());
    let server = Server::start(&["--plugin", &spec, "--tls", &format!("echo={cert},{key}"), "--admin", "127.0.0.1:0"], 2);
    (server, cert, key)
}

#[test]
fn rotation_while_a_client_loop_handshakes_fails_no_handshake() {
    let pki = Pki::new("rotate");
    pki.ca("ca");
    pki.leaf("server", "ca", Usage::Server);
    pki.leaf("renewed", "ca", Usage::Server);
    let (old, new) = (pki.fingerprint("server"), pki.fingerprint("renewed"));
    let (server, cert, key) = rotating_server(&pki);
    let (admin, addr, ca) = (admin_addr(&server), addr_of(&server, "echo"), pki.path("ca.pem"));

    // A bounded loop: at most 3000 handshakes or 60 s, ending after 25 with the new one.
    let mut client = tls_client_command(addr, &ca, &["--count", "3000", "--seconds", "60", "--until-fingerprint", &new, "--after", "25"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("running the Python TLS client");
    let mut lines = Vec::new();
    let mut reader = BufReader::new(client.stdout.take().unwrap());
    let mut rotated = false;
    let mut line = String::new();
    while reader.read_line(&mut line).unwrap() > 0 {
        lines.push(line.trim_end().to_string());
        line.clear();
        if !rotated && lines.len() == 20 {
            replace(&key, &std::fs::read(pki.path("renewed.key")).unwrap());
            replace(&cert, &std::fs::read(pki.path("renewed.pem")).unwrap());
            rotated = true;
        }
    }
    assert!(client.wait().unwrap().success());
    let failed: Vec<&String> = lines.iter().filter(|l| !l.starts_with("ok ")).collect();
    assert!(failed.is_empty(), "failed handshakes during the rotation: {failed:?}");
    let seen: Vec<&str> = lines.iter().map(|l| l.split(' ').nth(1).unwrap()).collect();
    let first_new = seen.iter().position(|fp| *fp == new).unwrap_or_else(|| {
        panic!("the new certificate was never served in {} handshakes; the server's log:\n{}", seen.len(), server.stderr())
    });
    assert!(seen[..first_new].iter().all(|fp| *fp == old) && seen[first_new..].iter().all(|fp| *fp == new), "{seen:?}");
    assert_eq!(seen.len() - first_new, 25, "{} handshakes in all", seen.len());

    let echo = [("plugin", "echo")];
    assert_eq!(metric(admin, "switchboard_tls_handshake_failures_total", &echo), 0.0);
    assert_eq!(metric(admin, "switchboard_tls_handshakes_total", &echo), seen.len() as f64);
    assert_eq!(metric(admin, "switchboard_tls_certificate_reloads_total", &[("plugin", "echo"), ("result", "rotated")]), 1.0);
    let log = server.stderr();
    assert!(log.contains(&format!("tls certificate rotated: new handshakes get the new certificate, open connections keep theirs plugin=echo cert_sha256={new} previous_cert_sha256={old}")), "{log}");
}

#[test]
fn a_bad_new_certificate_is_rejected_and_the_old_one_keeps_serving() {
    let pki = Pki::new("bad");
    pki.ca("ca");
    pki.leaf("server", "ca", Usage::Server);
    pki.leaf("renewed", "ca", Usage::Server);
    let (old, new) = (pki.fingerprint("server"), pki.fingerprint("renewed"));
    let (server, cert, key) = rotating_server(&pki);
    let (admin, addr, ca) = (admin_addr(&server), addr_of(&server, "echo"), pki.path("ca.pem"));
    let serving = || tls_client(addr, &ca, &[])[0].split(' ').nth(1).map(str::to_string).unwrap_or_default();
    assert_eq!(serving(), old);

    // A certificate file with no certificate in it.
    std::fs::write(&cert, b"this is not a certificate\n").unwrap();
    server.wait_for_log("holds no certificate");
    let log = server.stderr();
    assert!(
        log.contains("rejected: plugin echo: tls: the certificate file") && log.contains("the certificate in use keeps serving"),
        "{log}"
    );
    assert_eq!(serving(), old, "the old certificate keeps serving");
    // A new certificate whose key has not arrived yet.
    std::fs::write(&cert, std::fs::read(pki.path("renewed.pem")).unwrap()).unwrap();
    server.wait_for_log("does not match the certificate");
    assert_eq!(serving(), old);
    let rejected = metric(admin, "switchboard_tls_certificate_reloads_total", &[("plugin", "echo"), ("result", "rejected")]);
    assert!(rejected >= 2.0, "rejections counted: {rejected}");
    // Its key: now the pair is good, and new handshakes get it.
    std::fs::write(&key, std::fs::read(pki.path("renewed.key")).unwrap()).unwrap();
    server.wait_for_log("tls certificate rotated");
    assert_eq!(serving(), new);
    assert_eq!(metric(admin, "switchboard_tls_handshake_failures_total", &[("plugin", "echo")]), 0.0);
}

#[test]
fn unusable_tls_settings_at_start_say_what_to_do() {
    let pki = Pki::new("errors");
    pki.ca("ca");
    pki.leaf("server", "ca", Usage::Server);
    pki.leaf("other", "ca", Usage::Server);
    let spec = format!("{}@tls:127.0.0.1:0", plugin("echo").display());
    let (cert, key, other_key) = (pki.path("server.pem"), pki.path("server.key"), pki.path("other.key"));
    let missing = pki.path("missing.pem");
    let tls = |c: &str, k: &str| vec!["--tls".to_string(), format!("{c},{k}")];
    let cases: [(Vec<String>, String); 6] = [
        (vec![], "tls:127.0.0.1:0 needs a certificate: give --tls echo=CERT.pem,KEY.pem, or cert and key in its [tls] table".into()),
        (tls(&format!("echo={missing}"), &key), format!("cannot read the certificate file {missing}: check the path")),
        (tls(&format!("echo={cert}"), &other_key), format!("the key in {other_key} does not match the certificate in {cert}")),
        (tls(&format!("echo={key}"), &key), format!("the certificate file {key} holds no certificate")),
        (tls(&format!("echo={cert}"), &cert), format!("the key file {cert} holds no private key")),
        (tls(&format!("ech={cert}"), &key), "--tls: there is no plugin named \"ech\"".into()),
    ];
    for (extra, says) in cases {
        let mut args = vec!["serve", "--plugin", spec.as_str()];
        args.extend(extra.iter().map(String::as_str));
        let (code, stdout, stderr) = run(&args);
        assert_ne!(code, 0, "{args:?} started: {stdout}");
        assert!(stderr.contains(&says), "{args:?}: expected {says:?} in:\n{stderr}");
        assert!(!stdout.contains("listening"), "{stdout}");
    }
}

#[test]
fn a_sidecar_tls_table_in_the_plugins_folder_serves_with_paths_relative_to_it() {
    let pki = Pki::new("sidecar");
    pki.ca("ca");
    pki.leaf("server", "ca", Usage::Server);
    let folder = std::path::PathBuf::from(pki.path("plugins"));
    std::fs::create_dir_all(folder.join("certs")).unwrap();
    std::fs::copy(plugin("echo"), folder.join("echo.wasm")).unwrap();
    std::fs::copy(pki.path("server.pem"), folder.join("certs/server.pem")).unwrap();
    std::fs::copy(pki.path("server.key"), folder.join("certs/server.key")).unwrap();
    let sidecar = "listen = [\"tls:127.0.0.1:0\"]\n[tls]\ncert = \"certs/server.pem\"\nkey = \"certs/server.key\"\n";
    std::fs::write(folder.join("echo.toml"), sidecar).unwrap();
    let server = Server::start(&["--plugins", folder.to_str().unwrap()], 1);
    assert!(server.urls[0].1.starts_with("tls://127.0.0.1:"), "{:?}", server.urls);
    let lines = tls_client(addr_of(&server, "echo"), &pki.path("ca.pem"), &[]);
    assert_eq!(lines, [format!("ok {} TLSv1.3 Echo=>spam", pki.fingerprint("server"))]);
}

#[test]
fn behind_haproxy_the_proxy_header_comes_before_the_handshake() {
    let pki = Pki::new("proxy");
    pki.ca("ca");
    pki.leaf("server", "ca", Usage::Server);
    let (ca, fingerprint) = (pki.path("ca.pem"), pki.fingerprint("server"));
    let spec = format!("{}@tls:127.0.0.1:0", plugin("echo").display());
    let tls = format!("echo={},{}", pki.path("server.pem"), pki.path("server.key"));
    let server = Server::start(&["--plugin", &spec, "--tls", &tls, "--proxy-protocol", "echo", "--proxy-from", "127.0.0.1/32"], 1);
    let haproxy = crate::proxy::Haproxy::start(addr_of(&server, "echo"));
    let lines = tls_client(haproxy.addr, &ca, &["--count", "3"]);
    assert_eq!(lines, vec![format!("ok {fingerprint} TLSv1.3 Echo=>spam"); 3]);
    // Straight to the listener, the ClientHello is no PROXY header: refused.
    let direct = tls_client(addr_of(&server, "echo"), &ca, &[]);
    assert!(direct[0].starts_with("fail"), "{direct:?}");
}
