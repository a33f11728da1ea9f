//! getfile against seed-protocol clients, the seed's own getfile.py, and `connect`.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::*;

/// A granted root with a 5 MB random file, a file in a subdirectory and symlinks that
/// point outside; plus a directory outside the grant and an empty client directory.
struct Tree {
    base: PathBuf,
}

impl Tree {
    fn new(tag: &str) -> Tree {
        let base = std::env::temp_dir().join(format!("switchboard-getfile-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        for d in ["root/sub", "outside", "client"] {
            std::fs::create_dir_all(base.join(d)).unwrap();
        }
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let big: Vec<u8> = (0..5_000_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        std::fs::write(base.join("root/big.bin"), big).unwrap();
        std::fs::write(base.join("root/sub/textfile"), "a file in a subdirectory\n").unwrap();
        std::fs::write(base.join("outside/secret"), "must never be served\n").unwrap();
        std::os::unix::fs::symlink(base.join("outside/secret"), base.join("root/link")).unwrap();
        std::os::unix::fs::symlink(base.join("outside"), base.join("root/linkdir")).unwrap();
        Tree { base }
    }

    fn root(&self) -> PathBuf {
        self.base.join("root")
    }

    fn client(&self) -> PathBuf {
        self.base.join("client")
    }

    fn file(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.root().join(name)).unwrap()
    }

    fn serve(&self) -> Server {
        let spec = format!("{}@127.0.0.1:0", plugin("getfile").display());
        let dir = format!("getfile={}", self.root().display());
        Server::start(&["--plugin", &spec, "--dir", &dir], 1)
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

/// The seed protocol: send `request` (name + newline), read everything until close.
fn request(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut s = connect(addr);
    // A huge request may be cut off by the server's close: that is a refusal too.
    let _ = s.write_all(request);
    let mut got = Vec::new();
    match s.read_to_end(&mut got) {
        Ok(_) => got,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => got,
        Err(e) => panic!("reading the reply to {:?}: {e}", String::from_utf8_lossy(&request[..request.len().min(40)])),
    }
}

fn getfile(addr: SocketAddr, name: &str) -> Vec<u8> {
    request(addr, format!("{name}\n").as_bytes())
}

fn python3(args: &[&str], cwd: &Path) -> (bool, String) {
    let out = Command::new("python3")
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
        .expect("python3 is required (.ci/run checks for it)");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

fn seed_getfile() -> String {
    repo_file("tests/clients/getfile.py")
}

#[test]
fn seed_protocol_downloads_are_byte_exact_also_in_parallel() {
    let tree = Tree::new("exact");
    let server = tree.serve();
    let addr = server.addr(0);
    assert!(getfile(addr, "big.bin") == tree.file("big.bin"), "5 MB file altered");
    assert_eq!(getfile(addr, "sub/textfile"), tree.file("sub/textfile"));
    assert_eq!(request(addr, b"sub/textfile\r\n"), tree.file("sub/textfile"), "CRLF-terminated name");
    let parallel: Vec<_> = (0..2).map(|_| thread::spawn(move || getfile(addr, "big.bin"))).collect();
    for p in parallel {
        assert!(p.join().unwrap() == tree.file("big.bin"));
    }
    // The seed's own client, in its own working directory.
    let port = addr.port().to_string();
    for name in ["big.bin", "sub/textfile"] {
        let (ok, out) = python3(&[&seed_getfile(), "-file", name, "-port", &port], &tree.client());
        assert!(ok && out.starts_with(&format!("Client got {name} at ")), "{out}");
    }
    assert!(std::fs::read(tree.client().join("big.bin")).unwrap() == tree.file("big.bin"));
    assert_eq!(std::fs::read(tree.client().join("textfile")).unwrap(), tree.file("sub/textfile"));
}

#[test]
fn traversal_and_garbage_get_nothing_and_the_server_keeps_serving() {
    let tree = Tree::new("traversal");
    let server = tree.serve();
    let addr = server.addr(0);
    let mut huge = vec![b'a'; 1 << 20];
    huge.extend_from_slice(b"big.bin"); // no newline at all
    let corpus: Vec<(&str, Vec<u8>)> = vec![
        ("parent", b"../outside/secret\n".to_vec()),
        ("absolute", b"/etc/passwd\n".to_vec()),
        ("absolute into the tree", format!("{}/big.bin\n", tree.root().display()).into_bytes()),
        ("sub/../..", b"sub/../../outside/secret\n".to_vec()),
        ("symlink to a file outside", b"link\n".to_vec()),
        ("symlinked directory outside", b"linkdir/secret\n".to_vec()),
        ("NUL", b"big\0.bin\n".to_vec()),
        ("1 MiB name without newline", huge),
        ("non-UTF-8", b"big\xff\xfe.bin\n".to_vec()),
        ("empty line", b"\n".to_vec()),
        ("directory", b"sub\n".to_vec()),
        ("missing", b"nope.txt\n".to_vec()),
    ];
    for (what, req) in &corpus {
        let got = request(addr, req);
        assert!(got.is_empty(), "{what}: got {} bytes", got.len());
        assert_eq!(getfile(addr, "sub/textfile"), tree.file("sub/textfile"), "not serving after {what}");
    }
    server.wait_for_log("links are not followed");
    assert!(!server.stderr().contains("must never be served"));
}

#[test]
fn a_slow_reader_does_not_stop_other_downloads() {
    let tree = Tree::new("slow");
    let server = tree.serve();
    let addr = server.addr(0);
    let mut slow = connect(addr);
    slow.write_all(b"big.bin\n").unwrap();
    let slow_reader = thread::spawn(move || {
        let mut buf = [0u8; 1024];
        for _ in 0..20 {
            slow.read_exact(&mut buf).unwrap();
            thread::sleep(Duration::from_millis(100));
        }
    });
    let started = Instant::now();
    let fast: Vec<_> = (0..3).map(|_| thread::spawn(move || getfile(addr, "big.bin"))).collect();
    for f in fast {
        assert!(f.join().unwrap() == tree.file("big.bin"));
    }
    assert!(!slow_reader.is_finished(), "the fast downloads waited for the slow reader ({:?})", started.elapsed());
    slow_reader.join().unwrap();
}

#[test]
fn connect_downloads_from_the_seed_server_and_from_ours() {
    let tree = Tree::new("connect");
    // The seed's getfile.py server, serving from the root.
    let mut seed = Command::new("python3")
        .args([&seed_getfile(), "-mode", "server", "-port", "0"])
        .current_dir(tree.root())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 is required (.ci/run checks for it)");
    let mut first = String::new();
    let mut seed_out = std::io::BufReader::new(seed.stdout.take().unwrap());
    std::io::BufRead::read_line(&mut seed_out, &mut first).unwrap();
    // Keep draining: the seed server prints per connection and dies on a closed pipe.
    thread::spawn(move || std::io::copy(&mut seed_out, &mut std::io::sink()));
    let seed_addr = first.trim().rsplit("tcp://").next().unwrap().replace("0.0.0.0", "127.0.0.1");
    let ours = tree.serve();
    let ours_addr = ours.addr(0).to_string();
    let getfile_wasm = plugin("getfile");

    for (server, name) in [(&seed_addr, "big.bin"), (&ours_addr, "big.bin"), (&ours_addr, "sub/textfile")] {
        let out = Command::new(binary())
            .args(["connect", server, "--plugin", getfile_wasm.to_str().unwrap(), "--set", &format!("FILE={name}")])
            .current_dir(tree.client())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "connect to {server} for {name}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.starts_with(&format!("Client got {name} at ")), "{stdout}");
        let local = name.rsplit('/').next().unwrap();
        assert!(std::fs::read(tree.client().join(local)).unwrap() == tree.file(name), "{name} from {server} altered");
        std::fs::remove_file(tree.client().join(local)).unwrap();
    }

    // A refusal exits non-zero and leaves no file behind.
    let out = Command::new(binary())
        .args(["connect", &ours_addr, "--plugin", getfile_wasm.to_str().unwrap(), "--set", "FILE=link"])
        .current_dir(tree.client())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("the server sent nothing"), "{}", String::from_utf8_lossy(&out.stderr));
    let left: Vec<_> = std::fs::read_dir(tree.client()).unwrap().collect();
    assert!(left.is_empty(), "files left behind: {left:?}");
    let _ = seed.kill();
    let _ = seed.wait();
}

#[test]
fn dir_grants_are_checked_before_serving() {
    let spec = format!("{}@127.0.0.1:0", plugin("getfile").display());
    let (code, _, stderr) = run(&["serve", "--plugin", &spec, "--dir", "getfile=/nonexistent/dir"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("no such directory"), "{stderr}");
    let (code, _, stderr) = run(&["serve", "--plugin", &spec, "--dir", "other=/tmp"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("no plugin named \"other\""), "{stderr}");
}
