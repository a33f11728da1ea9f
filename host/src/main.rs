//! The `switchboard` binary: parse the command line, set up logging and the async
//! runtime, and hand over to the library.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use switchboard::cli::{Cli, Command};
use switchboard::runtime::{Runtime, RuntimeOptions};
use switchboard::session::Outcome;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `connect` is a client: its own outcome is the message, so only warnings are logged.
    let default_filter = match cli.command {
        Command::Connect(_) => "warn",
        _ => "info,wasmtime=warn,cranelift=warn",
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default_filter.into()))
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", describe(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, each said once: the library's errors already include their
/// cause in their message, so a cause is appended only if it is not there yet.
fn describe(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text = format!("{text}: {cause}");
        }
    }
    text
}

/// Raises the soft limit on open files to the hard limit: every connection is a socket,
/// and the usual soft default of 1024 is far below what a server needs.
fn raise_fd_limit() {
    // SAFETY: plain getrlimit/setrlimit calls on a local struct.
    unsafe {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                tracing::warn!("cannot raise the open-file limit: {}", std::io::Error::last_os_error());
            }
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    raise_fd_limit();
    let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    tokio.block_on(async {
        match cli.command {
            Command::Serve(args) => {
                let shutdown = shutdown_signal().context("installing signal handlers")?;
                switchboard::serve::serve(args.into_config(), shutdown).await?;
                Ok(ExitCode::SUCCESS)
            }
            Command::Connect(args) => {
                let rt = small_runtime(args.cache.cache())?;
                let outcome = switchboard::connect::connect(&rt, &args.addr, &args.plugin, args.settings).await?;
                Ok(match outcome {
                    Outcome::Ok => ExitCode::SUCCESS,
                    Outcome::Err(msg) | Outcome::Trap(msg) | Outcome::Closed(msg) | Outcome::Failed(msg) => {
                        eprintln!("error: {}: {msg}", args.plugin.display());
                        ExitCode::FAILURE
                    }
                    Outcome::Limit(hit, msg) => {
                        eprintln!("error: {}: {}: {msg}", args.plugin.display(), hit.name());
                        ExitCode::FAILURE
                    }
                })
            }
            Command::Check(args) => {
                let rt = small_runtime(args.cache.cache())?;
                let ok = switchboard::check::check(&rt, &args.paths).await;
                Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
            }
        }
    })
}

/// The runtime of `connect` and `check`: a few instances, no heavy lane.
fn small_runtime(cache: switchboard::cache::ArtifactCache) -> anyhow::Result<std::sync::Arc<Runtime>> {
    Runtime::new(RuntimeOptions { max_instances: 16, cache, heavy_lane_threads: 0, ..Default::default() })
        .map_err(anyhow::Error::from)
        .context("starting the WebAssembly runtime")
}

/// Installs the SIGINT/SIGTERM handlers now (so no signal can arrive before them and
/// kill the process outright); the future resolves at the first signal, and a second
/// one exits at once.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            eprintln!("second signal: exiting now");
            std::process::exit(1);
        });
    })
}
