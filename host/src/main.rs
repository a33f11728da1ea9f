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
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    tokio.block_on(async {
        match cli.command {
            Command::Serve(args) => {
                switchboard::serve::serve(args.into_config(), shutdown_signal()).await?;
                Ok(ExitCode::SUCCESS)
            }
            Command::Connect(args) => {
                let rt = Runtime::new(RuntimeOptions { max_instances: 16, cache: args.cache.cache(), ..Default::default() })
                    .map_err(anyhow::Error::from)
                    .context("starting the WebAssembly runtime")?;
                let outcome = switchboard::connect::connect(&rt, &args.addr, &args.plugin, args.settings).await?;
                Ok(match outcome {
                    Outcome::Ok => ExitCode::SUCCESS,
                    Outcome::Err(msg) => {
                        eprintln!("error: {}: {msg}", args.plugin.display());
                        ExitCode::FAILURE
                    }
                    Outcome::Trap(msg) | Outcome::Closed(msg) | Outcome::Failed(msg) => {
                        eprintln!("error: {}: {msg}", args.plugin.display());
                        ExitCode::FAILURE
                    }
                })
            }
            Command::Check(args) => {
                let rt = Runtime::new(RuntimeOptions { max_instances: 16, cache: args.cache.cache(), ..Default::default() })
                    .map_err(anyhow::Error::from)
                    .context("starting the WebAssembly runtime")?;
                let ok = switchboard::check::check(&rt, &args.paths).await;
                Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
            }
        }
    })
}

/// Resolves at the first SIGINT or SIGTERM; a second one exits at once.
async fn shutdown_signal() {
    wait_for_signal().await;
    tokio::spawn(async {
        wait_for_signal().await;
        eprintln!("second signal: exiting now");
        std::process::exit(1);
    });
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing the SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
