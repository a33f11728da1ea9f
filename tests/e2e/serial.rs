//! Serial lines over pseudo-terminals.
//!
//! The test plays the device: it holds the *master* side of a pty pair, and the server
//! opens the *slave* side through a symbolic link, the way it would open
//! `/dev/serial/by-id/usb-…` for a USB adapter. Closing the master is the unplug (the
//! server's reads see a hangup, the pty disappears with the server's descriptor); a new
//! pty pair behind the same link is the replug, found by the server's reopen loop.

use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, poll};
use nix::pty::{PtyMaster, grantpt, posix_openpt, ptsname_r, unlockpt};

use crate::admin::{admin_addr, api};
use crate::support::*;

/// A fresh directory for this test's device link.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("switchboard-serial-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// "Plugs in" a device at `link`: a new pty whose slave `link` points to. Returns the
/// master, the device's far end.
///
/// The master is opened close-on-exec: a copy inherited by a process another test spawns
/// at the same moment (a server, say) would keep the pty alive after "unplugging" it. The
/// slave is never opened here; only the server opens it.
fn plug(link: &Path) -> PtyMaster {
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC).expect("opening a pty");
    grantpt(&master).unwrap();
    unlockpt(&master).unwrap();
    let slave_path = ptsname_r(&master).unwrap();
    let _ = std::fs::remove_file(link);
    std::os::unix::fs::symlink(&slave_path, link).unwrap();
    master
}

/// "Unplugs" it: the link goes, and the far end closes.
fn unplug(link: &Path, master: PtyMaster) {
    std::fs::remove_file(link).unwrap();
    drop(master);
}

/// Writes all of `data` to the far end.
fn send(fd: RawFd, mut data: &[u8]) {
    while !data.is_empty() {
        let n = nix::unistd::write(fd, data).unwrap_or_else(|e| panic!("writing to the line: {e}"));
        data = &data[n..];
    }
}

/// Reads exactly `n` bytes from the far end, failing after [`PATIENCE`].
fn read_n_from(fd: RawFd, n: usize) -> Vec<u8> {
    let deadline = Instant::now() + PATIENCE;
    let mut got = Vec::with_capacity(n);
    let mut buf = [0u8; 4096];
    while got.len() < n {
        assert!(Instant::now() < deadline, "only {} of {n} bytes came back: {:?}", got.len(), String::from_utf8_lossy(&got));
        let mut ready = [PollFd::new(fd, PollFlags::POLLIN)];
        if poll(&mut ready, 200).expect("polling the line") == 0 {
            continue;
        }
        match nix::unistd::read(fd, &mut buf[..(n - got.len()).min(4096)]) {
            Ok(0) => panic!("the line closed after {} of {n} bytes", got.len()),
            Ok(k) => got.extend_from_slice(&buf[..k]),
            Err(e) => panic!("reading the far end after {} of {n} bytes: {e}", got.len()),
        }
    }
    got
}

/// Writes `data` from a second thread while reading the echo, so neither side's buffer
/// has to hold the whole of it.
fn echoes(master: &PtyMaster, data: &[u8]) {
    let fd = master.as_raw_fd();
    let sent = data.to_vec();
    let write = thread::spawn(move || send(fd, &sent));
    let got = read_n_from(fd, data.len());
    write.join().expect("writing to the line failed");
    assert!(
        got == data,
        "echo differs: sent {} bytes, first difference at {:?}",
        data.len(),
        got.iter().zip(data).position(|(a, b)| a != b)
    );
}

/// Waits until the server has logged `needle` at least `n` times.
fn wait_for_count(server: &Server, needle: &str, n: usize) {
    let deadline = Instant::now() + PATIENCE;
    while server.stderr().matches(needle).count() < n {
        assert!(Instant::now() < deadline, "{needle:?} not logged {n} times:\n{}", server.stderr());
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn text_binary_and_a_burst_echo_exactly_and_service_resumes_after_a_replug() {
    let dir = scratch("echo");
    let link = dir.join("ttyV0");
    let master = plug(&link);
    let spec = format!("{}@serial:{}:115200", plugin("echo").display(), link.display());
    let server = Server::start(&["--plugin", &spec, "--set", "echo.PREFIX="], 1);
    assert_eq!(server.urls[0], ("echo".to_string(), format!("serial://{}", link.display())));

    echoes(&master, b"Hello serial world\r\n");
    // NUL, XON/XOFF, ^C, ^D, ^Z, DEL, CR, LF and 0xff: raw mode passes them all through.
    echoes(&master, &[0x00, 0x11, 0x13, 0x03, 0x04, 0x1a, 0x7f, b'\r', b'\n', 0xff, 0x00]);
    let burst: Vec<u8> = (0..3000u32).map(|i| (i * 31 + i / 256) as u8).collect();
    echoes(&master, &burst);

    unplug(&link, master);
    server.wait_for_log("serial device gone");
    // Nothing to open for a while: the server keeps trying, with backoff.
    thread::sleep(Duration::from_millis(300));
    let master = plug(&link);
    server.wait_for_log("serial device back");
    echoes(&master, b"back again\n");
    echoes(&master, &burst);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_admin_api_lists_the_line_and_will_not_pause_it() {
    let dir = scratch("admin");
    let link = dir.join("ttyV0");
    let master = plug(&link);
    let spec = format!("{}@serial:{}", plugin("echo").display(), link.display());
    let server = Server::start(&["--plugin", &spec, "--set", "echo.PREFIX=", "--admin", "127.0.0.1:0"], 2);
    let admin = admin_addr(&server);
    echoes(&master, b"on the line\n");
    let device = link.display().to_string();
    let deadline = Instant::now() + PATIENCE;
    let line = loop {
        let (_, json) = api(admin, "GET", "/api/connections", &[]);
        let found = json["connections"].as_array().unwrap().iter().find(|c| c["transport"] == "serial" && c["bytes_out"] == 12).cloned();
        if let Some(line) = found {
            break line;
        }
        assert!(Instant::now() < deadline, "the serial conversation is not listed with its bytes: {json}");
        thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        (line["peer"].as_str(), line["plugin"].as_str(), line["bytes_in"].as_u64()),
        (Some(device.as_str()), Some("echo"), Some(12)),
        "{line}"
    );
    let (code, json) = api(admin, "POST", "/api/listeners/echo/pause", &[]);
    assert_eq!(code, 409, "{json}");
    assert!(json["error"].as_str().unwrap().contains("only serial lines"), "{json}");
    drop(master);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_plugin_that_returns_is_followed_by_a_fresh_instance_on_the_same_line() {
    let dir = scratch("restart");
    let link = dir.join("ttyV0");
    let master = plug(&link);
    let spec = format!("{}@serial:{}", fixture("misbehave").display(), link.display());
    let server = Server::start(&["--plugin", &spec, "--set", "misbehave.MODE=error"], 1);
    // Each instance reads once, then returns an error; the next one reads the next byte.
    for i in 1..=3 {
        send(master.as_raw_fd(), b"x");
        wait_for_count(&server, "failing on purpose", i);
    }
    assert!(!server.stderr().contains("serial device gone"), "the line itself never went away:\n{}", server.stderr());
    drop(master);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_missing_busy_or_non_serial_device_fails_the_start_with_the_reason() {
    let dir = scratch("refused");
    let echo = plugin("echo");
    let missing = dir.join("ttyUSB9");
    let (code, stdout, stderr) = run(&["serve", "--plugin", &format!("{}@serial:{}", echo.display(), missing.display())]);
    assert!(code != 0 && stdout.is_empty(), "{stdout}{stderr}");
    assert!(stderr.contains(&format!("cannot listen on serial:{}:9600", missing.display())) && stderr.contains("No such file"), "{stderr}");

    let file = dir.join("not-a-tty");
    std::fs::write(&file, b"").unwrap();
    let (code, _, stderr) = run(&["serve", "--plugin", &format!("{}@serial:{}", echo.display(), file.display())]);
    assert!(code != 0 && stderr.contains("not a serial device"), "{stderr}");

    // Opened exclusively: a second listener on the same line is refused.
    let link = dir.join("ttyV0");
    let master = plug(&link);
    let both = format!("{}@serial:{},serial:{}", echo.display(), link.display(), link.display());
    let (code, stdout, stderr) = run(&["serve", "--plugin", &both]);
    assert!(code != 0 && stdout.is_empty(), "{stdout}{stderr}");
    assert!(stderr.contains("exclusive lock") || stderr.contains("busy"), "{stderr}");
    drop(master);
    let _ = std::fs::remove_dir_all(&dir);
}
