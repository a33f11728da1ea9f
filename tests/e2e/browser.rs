//! The status page and the getfile form in a real browser: Debian's `chromium`, headless,
//! driven by playwright-core (pinned in tests/e2e/tools, installed there with `npm ci`
//! when missing; it downloads no browser). The script (tools/browser.mjs) opens the
//! status page, opens an echo connection and sees it appear, clicks its Close button and
//! sees it go, pauses and resumes the echo listener with its buttons, then fetches a file
//! through the getfile form and asks for a missing one.
//! Screenshots are kept under the target directory (`e2e-browser/`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::admin::admin_addr;
use crate::support::*;

/// How long the whole browser script may take (Chromium starts in a few seconds).
const SCRIPT_PATIENCE: Duration = Duration::from_secs(180);

/// The Chromium binary: Debian's, installed by `.ci/run`. Missing is a failure, not a skip.
fn chromium() -> PathBuf {
    let found =
        std::env::var_os("PATH").and_then(|paths| std::env::split_paths(&paths).map(|dir| dir.join("chromium")).find(|p| p.is_file()));
    found.unwrap_or_else(|| panic!("chromium is not installed: `.ci/run` installs Debian's package (apt-get install -y chromium)"))
}

/// tests/e2e/tools with playwright-core installed (`npm ci` from its lock file).
fn tools() -> PathBuf {
    let node = Command::new("node").arg("--version").output();
    assert!(node.is_ok_and(|o| o.status.success()), "node is not installed: `.ci/run` installs it (the browser tests run on node)");
    let dir = PathBuf::from(repo_file("tests/e2e/tools"));
    if !dir.join("node_modules/playwright-core/package.json").is_file() {
        let out = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .output()
            .expect("running npm ci in tests/e2e/tools (is npm installed?)");
        assert!(out.status.success(), "npm ci in {} failed:\n{}", dir.display(), String::from_utf8_lossy(&out.stderr));
    }
    dir
}

/// Where screenshots and downloads go: beside the binary under test, in the target dir.
fn output_dir() -> PathBuf {
    let dir = binary().parent().expect("the binary's directory").join("e2e-browser");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn listener(server: &Server, name: &str) -> std::net::SocketAddr {
    server.listeners.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no {name} listener")).1
}

/// Runs `node tools/browser.mjs CONFIG`; its last stdout line, parsed.
fn run_script(tools: &Path, config: &Path) -> serde_json::Value {
    let mut child = Command::new("node")
        .arg(tools.join("browser.mjs"))
        .arg(config)
        .current_dir(tools)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting node");
    let started = Instant::now();
    while child.try_wait().expect("polling node").is_none() {
        if started.elapsed() > SCRIPT_PATIENCE {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().expect("node's output");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the browser script failed ({:?}):\nstdout:\n{stdout}\nstderr:\n{stderr}", out.status);
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("the script's summary is not JSON ({e}):\n{stdout}"))
}

#[test]
fn the_status_page_and_the_getfile_form_work_in_headless_chromium() {
    let (chromium, tools) = (chromium(), tools());
    let out = output_dir();
    let root = out.join("served");
    std::fs::create_dir_all(&root).unwrap();
    let content: Vec<u8> = (0..200_000u32).map(|i| (i * 13 % 256) as u8).collect();
    std::fs::write(root.join("report.bin"), &content).unwrap();

    let echo = format!("{}@127.0.0.1:0", plugin("echo").display());
    let getfile = format!("{}@127.0.0.1:0", plugin("getfile").display());
    let grant = format!("getfile={}", root.display());
    let server = Server::start(&["--plugin", &echo, "--plugin", &getfile, "--dir", &grant, "--admin", "127.0.0.1:0"], 3);
    let config = serde_json::json!({
        "admin": format!("http://{}", admin_addr(&server)),
        "echo": listener(&server, "echo").to_string(),
        "getfile": { "port": listener(&server, "getfile").port(), "file": "report.bin", "missing": "nothing-here.bin" },
        "out": out,
        "chromium": chromium,
    });
    let config_path = out.join("config.json");
    std::fs::write(&config_path, config.to_string()).unwrap();
    let summary = run_script(&tools, &config_path);
    eprintln!("browser test summary: {summary}\nscreenshots in {}", out.display());

    let closed = summary["closedMessage"].as_str().unwrap_or_default();
    assert!(closed.starts_with("closing connection "), "{summary}");
    assert!(summary["pausedMessage"].as_str().unwrap_or_default().contains(": paused"), "{summary}");
    assert_eq!(summary["suggested"], "report.bin", "{summary}");
    let downloaded = std::fs::read(summary["downloaded"].as_str().expect("a downloaded path")).expect("the downloaded file");
    assert!(downloaded == content, "the download differs: {} bytes, want {}", downloaded.len(), content.len());
    let refusal = summary["refusal"].as_str().unwrap_or_default();
    assert!(refusal.contains("gave no file \"nothing-here.bin\""), "{summary}");
    for shot in ["1-status.png", "2-connection.png", "3-closed.png", "3b-paused.png", "4-getfile-form.png", "5-getfile-refused.png"] {
        assert!(std::fs::metadata(out.join(shot)).is_ok_and(|m| m.len() > 1000), "no screenshot {shot}");
    }
    assert!(server.stderr().contains("closing the connection (admin API)"), "{}", server.stderr());
}
