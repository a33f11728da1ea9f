//! `switchboard test` replays the transcripts in tests/transcripts/ against every echo and
//! chat implementation; `serve --record` writes transcripts of real sessions that replay
//! green, and an edited transcript fails with a diff and a non-zero exit.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::*;

fn transcript(name: &str) -> String {
    repo_file(&format!("tests/transcripts/{name}.transcript"))
}

/// `switchboard test PLUGIN TRANSCRIPTS...` → (exit code, stdout, stderr).
fn replay(plugin: &Path, transcripts: &[&str]) -> (i32, String, String) {
    let plugin = plugin.display().to_string();
    let mut args = vec!["test", plugin.as_str()];
    args.extend_from_slice(transcripts);
    run(&args)
}

fn assert_passes(plugin: &Path, transcripts: &[&str]) {
    let (code, out, err) = replay(plugin, transcripts);
    assert_eq!(code, 0, "{} on {transcripts:?}:\n{out}{err}", plugin.display());
    for t in transcripts {
        assert!(out.contains(&format!("ok {t}\n")), "{out}");
    }
    assert!(out.ends_with(&format!("{} passed, 0 failed\n", transcripts.len())), "{out}");
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("switchboard-transcripts-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_seed_echo_transcript_passes_on_every_echo() {
    for name in ["echo", "echo-py", "echo-js", "echo-c"] {
        assert_passes(&plugin(name), &[&transcript("echo")]);
    }
}

#[test]
fn the_two_client_chat_transcript_passes_on_every_chat() {
    for name in ["chat", "chat-py", "chat-js"] {
        assert_passes(&plugin(name), &[&transcript("chat")]);
    }
}

#[test]
fn an_edited_transcript_fails_with_a_diff() {
    let dir = scratch("edited");
    let seed = std::fs::read_to_string(transcript("echo")).unwrap();
    let edited = seed.replace("< Echo=>spam", "< Echo=>spom");
    assert_ne!(edited, seed, "the seed transcript has an `< Echo=>spam` line");
    let bad = dir.join("bad.transcript");
    std::fs::write(&bad, edited).unwrap();
    let (bad, good) = (bad.display().to_string(), transcript("echo"));
    let (code, out, _) = replay(&plugin("echo"), &[&bad, &good]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("FAIL {bad}\n")) && out.contains(&format!("ok {good}\n")), "{out}");
    assert!(out.contains("the server's bytes to the client differ"), "{out}");
    assert!(out.contains("  -< Echo=>spom\n  +< Echo=>spam\n"), "{out}");
    assert!(out.ends_with("1 passed, 1 failed\n"), "{out}");

    // A line that is not a step names its line; a plugin that never answers times out.
    std::fs::write(dir.join("syntax.transcript"), "> fine\n>not fine\n").unwrap();
    std::fs::write(dir.join("silent.transcript"), "< nobody says this\n").unwrap();
    let (syntax, silent) = (dir.join("syntax.transcript").display().to_string(), dir.join("silent.transcript").display().to_string());
    let plugin = plugin("echo").display().to_string();
    let (code, out, _) = run(&["test", &plugin, "--timeout", "300ms", &syntax, &silent]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("not a transcript: line 2: after `>` put one space"), "{out}");
    assert!(out.contains("line 1: the client waited 300ms for the server's bytes"), "{out}");
    assert!(out.contains("  -< nobody says this\n  +(nothing)\n"), "{out}");
}

/// Waits until `path` holds a whole recorded conversation of `clients` clients (the
/// files are complete once their connections have ended).
fn wait_recorded(path: &Path, clients: usize) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.lines().filter(|l| l.ends_with("eof")).count() >= clients {
            return text;
        }
        assert!(Instant::now() < deadline, "{} not complete after {PATIENCE:?}:\n{text}", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn serve_record_writes_transcripts_that_replay() {
    let dir = scratch("record");
    let record = dir.join("rec");
    let (echo, chat) = (plugin("echo"), plugin("chat"));
    let specs = [format!("{}@127.0.0.1:0", echo.display()), format!("{}@127.0.0.1:0", chat.display())];
    let server = Server::start(&["--record", record.to_str().unwrap(), "--plugin", &specs[0], "--plugin", &specs[1]], 2);

    // An echo session with binary bytes and a line split over two writes.
    let mut s = connect(server.addr(0));
    for m in [&b"Hello, world"[..], b"\x00\xff\\ bin\r\n", b"spam "] {
        s.write_all(m).unwrap();
        assert_eq!(read_n(&mut s, 6 + m.len()), [b"Echo=>", m].concat());
    }
    s.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    let echo_file = record.join("echo.transcript");
    let recorded = wait_recorded(&echo_file, 1);
    assert!(recorded.contains("c1> \\x00\\xff\\\\ bin\\r\\n\nc1< Echo=>\\x00\\xff\\\\ bin\\r\\n\n"), "{recorded}");
    assert!(recorded.contains("c1> spam\\x20\n"), "{recorded}");

    // A chat session of two clients.
    let mut alice = LineClient::connect(server.addr(1));
    assert_eq!(alice.line(), "You're connected to the switchboard chat server");
    let mut bob = LineClient::connect(server.addr(1));
    assert_eq!(bob.line(), "You're connected to the switchboard chat server");
    assert_eq!(alice.line(), format!("Client joined {}", bob.addr));
    alice.send("hi bob\r\n");
    assert_eq!(bob.line(), format!("[{}] hi bob", alice.addr));
    bob.stream.shutdown(Shutdown::Write).unwrap();
    bob.expect_closed();
    assert_eq!(alice.line(), format!("Client left {}", bob.addr));
    alice.stream.shutdown(Shutdown::Write).unwrap();
    alice.expect_closed();
    let chat_file = record.join("chat.transcript");
    wait_recorded(&chat_file, 2);

    // Each connection has its own file too.
    let mut own: Vec<String> = std::fs::read_dir(&record)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("echo-") || n.starts_with("chat-"))
        .collect();
    own.sort();
    assert_eq!(own.len(), 3, "{own:?}");
    let echo_own = record.join(own.iter().find(|n| n.starts_with("echo-")).unwrap());
    let own_text = wait_recorded(&echo_own, 1);
    assert!(own_text.contains("\nconnects from 127.0.0.1:"), "{own_text}");

    let (echo_file, echo_own, chat_file) =
        (echo_file.display().to_string(), echo_own.display().to_string(), chat_file.display().to_string());
    assert_passes(&echo, &[&echo_file, &echo_own]);
    assert_passes(&chat, &[&chat_file]);
    assert_passes(&plugin("chat-py"), &[&chat_file]);

    // Edited, the recording fails.
    let edited = dir.join("edited.transcript");
    let text = std::fs::read_to_string(&chat_file).unwrap();
    std::fs::write(&edited, text.replacen("] hi bob", "] hi rob", 1)).unwrap();
    let (code, out, _) = replay(&chat, &[edited.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("hi rob\\r\\n\n") && out.contains("hi bob\\r\\n\n") && out.ends_with("0 passed, 1 failed\n"), "{out}");
    drop(server);
}

#[test]
fn a_sidecar_record_key_records_its_plugin() {
    let dir = scratch("sidecar");
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(plugin("echo"), plugins.join("echo.wasm")).unwrap();
    std::fs::write(plugins.join("echo.toml"), "listen = [\"127.0.0.1:0\"]\nrecord = \"../rec\"\n").unwrap();
    let server = Server::start(&["--plugins", plugins.to_str().unwrap()], 1);
    seed_echo_client(server.addr(0), &[b"Hello, world", b"spam"]);
    let recorded = wait_recorded(&dir.join("rec/echo.transcript"), 1);
    assert!(recorded.contains("c1> Hello, world\nc1< Echo=>Hello, world\n"), "{recorded}");
    assert_passes(&plugin("echo"), &[dir.join("rec/echo.transcript").to_str().unwrap()]);
    drop(server);
}
