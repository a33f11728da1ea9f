//! The outside TLS peers of the TLS tests: certificate folders made by Debian's
//! `openssl` (`openssl req` and `x509`, in a temporary folder per test: CAs, server and
//! client leaves, an expired client, fingerprints), `openssl s_client`, and the Python
//! `ssl` client (tests/e2e/tools/tls_client.py, run by the e2e virtualenv's interpreter).

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Instant;

use crate::support::{PATIENCE, repo_file};

/// Runs `openssl ARGS`; fails the test loudly if openssl is missing or refuses.
pub(crate) fn openssl(args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("openssl is required for the TLS tests (Debian package openssl; .ci/run installs it): {e}"));
    assert!(out.status.success(), "openssl {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What a leaf certificate is for.
#[derive(Clone, Copy)]
pub(crate) enum Usage {
    /// A server: SANs localhost and 127.0.0.1.
    Server,
    /// A client (extendedKeyUsage clientAuth).
    Client,
}

/// A folder of certificates made by openssl for one test; removed when dropped.
pub(crate) struct Pki {
    dir: PathBuf,
}

impl Pki {
    pub(crate) fn new(test: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!("switchboard-tls-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Pki { dir }
    }

    /// The path of a file in the folder.
    pub(crate) fn path(&self, file: &str) -> String {
        self.dir.join(file).to_string_lossy().into_owned()
    }

    /// A self-signed CA: NAME.pem and NAME.key.
    pub(crate) fn ca(&self, name: &str) {
        let (pem, key, subject) = (self.path(&format!("{name}.pem")), self.path(&format!("{name}.key")), format!("/CN={name}"));
        openssl(&self_signed(&key, &pem, &subject));
    }

    /// A certificate NAME.pem (key NAME.key) issued by the CA `ca`, valid for 30 days.
    pub(crate) fn leaf(&self, name: &str, ca: &str, usage: Usage) {
        let extensions: &[&str] = match usage {
            Usage::Server => &["subjectAltName=DNS:localhost,IP:127.0.0.1", "extendedKeyUsage=serverAuth"],
            Usage::Client => &["extendedKeyUsage=clientAuth"],
        };
        self.leaf_as(name, ca, &format!("/CN={name}"), extensions);
    }

    /// A certificate NAME.pem (key NAME.key) for `subject` (`/O=…/CN=…`) issued by the CA
    /// `ca`, valid for 30 days, not a CA, with `extensions` (`-addext` values) added.
    pub(crate) fn leaf_as(&self, name: &str, ca: &str, subject: &str, extensions: &[&str]) {
        let (pem, key) = (self.path(&format!("{name}.pem")), self.path(&format!("{name}.key")));
        let (ca_pem, ca_key) = (self.path(&format!("{ca}.pem")), self.path(&format!("{ca}.key")));
        let mut args = self_signed(&key, &pem, subject);
        args.extend(["-CA", &ca_pem, "-CAkey", &ca_key, "-addext", "basicConstraints=critical,CA:FALSE"]);
        for extension in extensions {
            args.extend(["-addext", extension]);
        }
        openssl(&args);
    }

    /// A client certificate NAME.pem issued by `ca` that expired a day ago (`openssl req`
    /// makes the request, `openssl x509 -req -days -1` signs it in the past).
    pub(crate) fn expired_client(&self, name: &str, ca: &str) {
        let (pem, key, csr, subject) = (
            self.path(&format!("{name}.pem")),
            self.path(&format!("{name}.key")),
            self.path(&format!("{name}.csr")),
            format!("/CN={name}"),
        );
        let (ca_pem, ca_key) = (self.path(&format!("{ca}.pem")), self.path(&format!("{ca}.key")));
        openssl(&[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            &subject,
        ]);
        // With extensions it is an X.509 v3 certificate (webpki refuses v1).
        let ext = self.path(&format!("{name}.ext"));
        std::fs::write(&ext, "basicConstraints=critical,CA:FALSE\nextendedKeyUsage=clientAuth\n").unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            "-1",
            "-extfile",
            &ext,
            "-out",
            &pem,
        ]);
        // `-checkend 0` exits 1 for a certificate that has expired.
        let check = Command::new("openssl").args(["x509", "-in", &pem, "-noout", "-checkend", "0"]).output().unwrap();
        assert_eq!(check.status.code(), Some(1), "not expired: {}", String::from_utf8_lossy(&check.stdout));
    }

    /// NAME.pem's SHA-256 fingerprint as lowercase hex (what the host logs and the
    /// Python client prints).
    pub(crate) fn fingerprint(&self, name: &str) -> String {
        let out = openssl(&["x509", "-in", &self.path(&format!("{name}.pem")), "-noout", "-fingerprint", "-sha256"]);
        out.trim().rsplit('=').next().unwrap().replace(':', "").to_lowercase()
    }
}

/// `openssl req` arguments for a new P-256 key in `key` and a certificate in `pem` for
/// `subject`, valid for 30 days: self-signed as they are, issued by a CA with `-CA`.
fn self_signed<'a>(key: &'a str, pem: &'a str, subject: &'a str) -> Vec<&'a str> {
    let curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    [&["req", "-x509"][..], &curve, &["-keyout", key, "-out", pem, "-days", "30", "-subj", subject]].concat()
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The e2e virtualenv's interpreter (`cargo xtask test` sets it).
pub(crate) fn python() -> String {
    std::env::var("SWITCHBOARD_E2E_PYTHON").unwrap_or_else(|_| panic!("SWITCHBOARD_E2E_PYTHON is not set: run `cargo xtask test`"))
}

/// The Python TLS client, with ARGS.
pub(crate) fn tls_client_command(addr: SocketAddr, ca: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(python());
    cmd.arg(repo_file("tests/e2e/tools/tls_client.py")).args(["--addr", &addr.to_string(), "--ca", ca]).args(args);
    cmd
}

/// Runs the Python TLS client to its end: one line per connection.
pub(crate) fn tls_client(addr: SocketAddr, ca: &str, args: &[&str]) -> Vec<String> {
    let out = tls_client_command(addr, ca, args).stdin(Stdio::null()).output().expect("running the Python TLS client");
    assert!(out.status.success(), "tls_client.py failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

/// `openssl s_client` with `version` (`-tls1_3`, `-tls1_2`), verifying the server
/// against `ca`: sends `spam` and returns what came back once `Echo=>spam` did.
pub(crate) fn s_client_echo(addr: SocketAddr, ca: &str, version: &str) -> String {
    let mut child = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &addr.to_string(),
            "-CAfile",
            ca,
            "-verify_return_error",
            "-verify_ip",
            "127.0.0.1",
            "-quiet",
            version,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl s_client (Debian package openssl; .ci/run installs it)");
    child.stdin.as_mut().unwrap().write_all(b"spam\n").unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let (mut buf, mut got) = ([0u8; 256], Vec::new());
        while let Ok(n @ 1..) = stdout.read(&mut buf) {
            got.extend_from_slice(&buf[..n]);
            if tx.send(String::from_utf8_lossy(&got).into_owned()).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + PATIENCE;
    let mut seen = String::new();
    while !seen.contains("Echo=>spam") {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(text) => seen = text,
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    assert!(
        seen.contains("Echo=>spam\n"),
        "openssl s_client {version} got {seen:?}; its stderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    seen
}
