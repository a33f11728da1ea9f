//! The Python, JavaScript and C plugins (plugins/python, plugins/js, plugins/c) run the same checks as
//! their Rust twins: the functions in echo.rs and chat.rs, applied to their files.
//!
//! Each check starts one server, and a server compiles its plugin when it starts (~10 s
//! for these components unless the host's compile cache has them), so there are few.

use crate::chat::{commands, five_client_transcript, ipv4_and_ipv6_clients_show_their_own_addresses};
use crate::echo::{pure_echo, seed_client_script, seed_transcript};
use crate::support::{plugin, run};

#[test]
fn python_echo_seed_transcript() {
    seed_transcript(&plugin("echo-py"));
}

#[test]
fn python_echo_pure_echo_read_16_bytes_at_a_time() {
    pure_echo(&plugin("echo-py"));
}

#[test]
fn python_chat_five_client_transcript() {
    five_client_transcript(&plugin("chat-py"));
}

#[test]
fn python_chat_shows_ipv4_and_ipv6_addresses() {
    ipv4_and_ipv6_clients_show_their_own_addresses(&plugin("chat-py"));
}

#[test]
fn python_chat_commands() {
    commands(&plugin("chat-py"));
}

#[test]
fn javascript_echo_seed_transcript() {
    seed_transcript(&plugin("echo-js"));
}

#[test]
fn javascript_chat_five_client_transcript() {
    five_client_transcript(&plugin("chat-js"));
}

#[test]
fn javascript_chat_shows_ipv4_and_ipv6_addresses() {
    ipv4_and_ipv6_clients_show_their_own_addresses(&plugin("chat-js"));
}

#[test]
fn javascript_chat_commands() {
    commands(&plugin("chat-js"));
}

#[test]
fn c_echo_seed_transcript() {
    seed_transcript(&plugin("echo-c"));
}

#[test]
fn c_echo_answers_the_seed_client_script() {
    seed_client_script(&plugin("echo-c"));
}

#[test]
fn c_echo_check_reports_its_world_and_describe_info() {
    let echo = plugin("echo-c");
    let (code, stdout, stderr) = run(&["check", echo.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    for expected in ["world    stream-plugin", "name     echo-c", "listen   tcp:50007", "sha256   "] {
        assert!(stdout.contains(expected), "missing {expected:?} in:\n{stdout}");
    }
}
