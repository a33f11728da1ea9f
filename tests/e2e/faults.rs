//! Misbehaving plugins hurt only their own connection.

use std::io::{Read, Write};
use std::thread;

use crate::support::*;

#[test]
fn a_plugin_that_traps_on_first_read_closes_only_its_connection() {
    let trap = format!("{}@127.0.0.1:0", fixture("misbehave").display());
    let echo = format!("{}@127.0.0.1:0", plugin("echo").display());
    let mut server = Server::start(&["--plugin", &trap, "--set", "misbehave.MODE=trap-on-read", "--plugin", &echo], 2);
    let (trap_addr, echo_addr) = (server.addr(0), server.addr(1));
    let steady = thread::spawn(move || {
        let mut s = connect(echo_addr);
        for i in 0..200 {
            let msg = format!("steady {i}");
            s.write_all(msg.as_bytes()).unwrap();
            assert_eq!(read_n(&mut s, 6 + msg.len()), format!("Echo=>{msg}").as_bytes());
        }
    });
    for _ in 0..10 {
        let mut s = connect(trap_addr);
        s.write_all(b"spam").unwrap();
        let mut buf = [0u8; 64];
        match s.read(&mut buf) {
            Ok(0) => {}
            Ok(n) => panic!("the trapping plugin sent {:?}", &buf[..n]),
            Err(e) => assert!(matches!(e.kind(), std::io::ErrorKind::ConnectionReset), "{e}"),
        }
    }
    steady.join().expect("the echo client was disturbed by the trapping plugin");
    assert!(server.alive());
    let log = server.stderr();
    assert!(log.contains("plugin trapped"), "trap not logged:\n{log}");
    assert!(log.contains("wasm backtrace"), "trap logged without its wasm backtrace:\n{log}");
}

#[test]
fn an_error_return_is_logged_and_closes_the_connection() {
    let spec = format!("{}@127.0.0.1:0", fixture("misbehave").display());
    let server = Server::start(&["--plugin", &spec, "--set", "misbehave.MODE=error"], 1);
    let mut s = connect(server.addr(0));
    s.write_all(b"x").unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    // The log line is written just after the close; give it a moment.
    let deadline = std::time::Instant::now() + PATIENCE;
    while !server.stderr().contains("failing on purpose") {
        assert!(std::time::Instant::now() < deadline, "error not logged:\n{}", server.stderr());
        thread::sleep(std::time::Duration::from_millis(20));
    }
}
